package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"code.cloudfoundry.org/brokerapi/v13/domain"
	"code.cloudfoundry.org/brokerapi/v13/domain/apiresponses"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
)

// RestoreParam is the update parameter that restores one of the instance's
// own backups: its time (or the start of it), its file or object name, or
// "latest". It cannot be combined with other parameters.
const RestoreParam = "restore"

// restoreOperation is the operation of an asynchronous restore, as
// last_operation sees it.
const restoreOperation = "restore"

// restoreTimeout bounds a restore run by the broker, download included.
const restoreTimeout = 2 * time.Hour

func restoreSchema() map[string]any {
	return map[string]any{
		"type": "string",
		"description": "Restores one of this instance's backups: its time (e.g. 20260121T030000.000Z, or the start of it), " +
			"its file name, or \"latest\". The current data is replaced once the backup has loaded and verified; " +
			"credentials and bindings stay. It cannot be combined with other parameters.",
	}
}

// splitRestore reports whether raw update parameters ask for a restore,
// and of which backup; restore must come alone.
func splitRestore(raw json.RawMessage) (string, bool, error) {
	obj, err := params.Object(raw)
	if err != nil {
		return "", false, err
	}
	v, ok := obj[RestoreParam]
	if !ok {
		return "", false, nil
	}
	var ref string
	if err := json.Unmarshal(v, &ref); err != nil || strings.TrimSpace(ref) == "" {
		return "", true, fmt.Errorf("%w: parameter %q must name a backup: its time, its file name or \"latest\"", params.ErrInvalid, RestoreParam)
	}
	if len(obj) > 1 {
		return "", true, fmt.Errorf("%w: parameter %q cannot be combined with other parameters: send them in an update of their own", params.ErrInvalid, RestoreParam)
	}
	return ref, true, nil
}

// openBackups opens the backup store of the config's backups section.
func (b *Broker) openBackups() error {
	if b.cfg.Backups == nil {
		return nil
	}
	st, err := b.cfg.Backups.Open()
	if err != nil {
		return fmt.Errorf("backups: %w", err)
	}
	b.backups = st
	return nil
}

// restore starts restoring one of the instance's own backups: it finds the
// backup under the instance's prefix (a name outside it is refused), records
// the operation, and streams the backup from the store to the instance's
// agent, which swaps the data once the backup verified. With async it runs
// in the background and last_operation reports it.
func (b *Broker) restore(ctx context.Context, id string, d domain.UpdateDetails, ref string, async bool) (bool, error) {
	if b.backups == nil {
		return false, unprocessable("", "Backups are not configured for this service, so there is nothing to restore. Ask your operator.")
	}
	if err := b.checkMaintenanceInfo(d.MaintenanceInfo); err != nil {
		return false, err
	}
	inst, unlock, err := b.lockReady(ctx, id)
	if err != nil {
		return false, err
	}
	defer unlock()
	if d.PlanID != "" && d.PlanID != inst.PlanID {
		return false, badRequest("parameter %q cannot be combined with a plan change", RestoreParam)
	}
	if _, running := b.restoring.Load(id); running {
		return false, apiresponses.ErrConcurrentInstanceAccess
	}
	if f := inst.ReplicaOf; f != nil {
		return false, unprocessable("", "The instance follows a leader, which would overwrite restored data. Make it a leader first (replica_of: null), then restore.")
	}
	prefix := b.cfg.Backups.PathPrefix
	bk, err := backup.Resolve(ctx, b.backups, prefix, id, ref)
	switch {
	case errors.Is(err, backup.ErrOtherInstance):
		return false, &userError{status: http.StatusForbidden, cause: err,
			msg: fmt.Sprintf("parameter %q: only backups of this instance can be restored into it; name one by its time or file name", RestoreParam)}
	case errors.Is(err, backup.ErrNoBackup), errors.Is(err, backup.ErrAmbiguous):
		return false, badRequest("parameter %q: %v", RestoreParam, err)
	case err != nil:
		return false, &userError{status: http.StatusServiceUnavailable, cause: err,
			msg: fmt.Sprintf("The backups could not be listed: their store did not answer. Try again in a few minutes; if it persists, give your operator request id %s.", requestID(ctx))}
	}
	v, err := b.restoreTarget(ctx, inst)
	if err != nil {
		return false, err
	}
	// Marked running before the record says in progress, so that a poll
	// in between never takes the restore for one a restart cut short.
	b.restoring.Store(id, true)
	err = b.state.Update(func(s *state) error {
		if r := s.Instances.Edit(id); r != nil {
			r.LastOp = operation{Type: restoreOperation, State: domain.InProgress, Description: "restoring backup " + bk.Stamp, At: now()}
		}
		return nil
	})
	if err != nil {
		b.restoring.Delete(id)
		return false, err
	}
	b.logger.Info("restore started", "instance", id, "backup", bk.Name, "on", v.where(), "request_id", requestID(ctx), "async", async)
	if !async {
		defer b.restoring.Delete(id)
		return false, b.runRestore(ctx, inst, bk, v)
	}
	b.resets.Go(func() {
		defer b.restoring.Delete(id)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), restoreTimeout)
		defer cancel()
		_ = b.runRestore(ctx, inst, bk, v)
	})
	return true, nil
}

// restoreTarget is the VM a restore goes to: the instance's, or the
// member of its HA group that leads now, from which the followers resync
// (a restored follower would be resynced from its leader).
func (b *Broker) restoreTarget(ctx context.Context, inst *instance) (vm, error) {
	if inst.HA == nil {
		return b.vmOf(inst)
	}
	vms, i, err := b.leaderVM(ctx, inst)
	if vms == nil {
		return vm{}, err
	}
	if err != nil {
		return vm{}, &userError{status: http.StatusServiceUnavailable, cause: err,
			msg: fmt.Sprintf("The instance's leader could not be found: its Sentinels did not answer. Try again in a few minutes; if it persists, give your operator request id %s.", requestID(ctx))}
	}
	return vms[i], nil
}

// runRestore streams the backup to the instance's agent and records the
// outcome as the instance's last operation. The error is the one to answer
// with. In an HA group the restore ends once the leader has a follower in
// sync again: it restarted on the backup's data and its followers resync
// in full, and until one is back the leader refuses writes (NOREPLICAS).
func (b *Broker) runRestore(ctx context.Context, inst *instance, bk backup.Backup, v vm) error {
	id, rid := inst.ID, requestID(ctx)
	res, err := func() (agentapi.RestoreResult, error) {
		body, err := b.backups.Get(ctx, bk.Name)
		if err != nil {
			return agentapi.RestoreResult{}, fmt.Errorf("downloading %s: %w", b.backups.Where(bk.Name), err)
		}
		defer body.Close()
		return v.restore(ctx, id, body)
	}()
	lagging := ""
	if p, ok := b.plans[inst.PlanID].(*haPlan); ok && err == nil && inst.HA != nil {
		if serr := p.waitInSync(ctx, inst); serr != nil {
			// Restored all the same: the followers catch up on their own.
			b.logger.Warn("restored, but no follower caught up with the leader in time", "instance", id, "request_id", rid, "error", serr)
			lagging = fmt.Sprintf("; no follower had caught up with the leader within %v, and until one has the leader refuses writes (NOREPLICAS)", p.syncTimeout)
		}
	}
	op := operation{Type: restoreOperation, State: domain.Succeeded, At: now()}
	var answer error
	result := restoreResultSuccess
	if err != nil {
		result = restoreResultFailure
		b.logger.Error("restore failed", "instance", id, "backup", bk.Name, "on", v.where(), "request_id", rid, "error", err)
		answer = restoreFailure(err, bk.Stamp, rid)
		op.State, op.Description = domain.Failed, answer.Error()
	} else {
		b.logger.Info("restore done", "instance", id, "backup", bk.Name, "keys", res.Keys, "request_id", rid)
		op.Description = fmt.Sprintf("restored backup %s (taken %s, %d keys)", bk.Stamp, res.Backup.CreatedAt.Format(time.RFC3339), res.Keys) + lagging
	}
	b.metrics.restores.WithLabelValues(result).Inc()
	if err := b.state.Update(func(s *state) error {
		// A delete that started meanwhile owns the last operation now.
		if r := s.Instances.Edit(id); r != nil && r.LastOp.Type == restoreOperation {
			r.LastOp = op
		}
		return nil
	}); err != nil {
		return err
	}
	return answer
}

// restoreFailure says what went wrong in words for the app developer; the
// cause stays in the broker's log under the request id.
func restoreFailure(err error, stamp, rid string) error {
	kept := "The instance kept its data."
	switch {
	case errors.Is(err, agentapi.ErrInvalid):
		return &userError{status: http.StatusUnprocessableEntity, cause: err,
			msg: fmt.Sprintf("Backup %s could not be restored: it is damaged or its data did not verify. %s Try another backup; if it persists, give your operator request id %s.", stamp, kept, rid)}
	case errors.Is(err, agentapi.ErrConflict):
		return &userError{status: http.StatusConflict, cause: err,
			msg: fmt.Sprintf("Backup %s could not be restored now: a backup or restore of the instance is running. %s Try again in a few minutes.", stamp, kept)}
	case errors.Is(err, agentapi.ErrFull):
		return &userError{status: http.StatusUnprocessableEntity, cause: err,
			msg: fmt.Sprintf("Backup %s could not be restored: the VM has no disk space left for it. %s Give your operator request id %s.", stamp, kept, rid)}
	case errors.Is(err, agentapi.ErrNotFound):
		return &userError{status: http.StatusNotFound, cause: err, msg: "The instance no longer exists."}
	default:
		return &userError{status: http.StatusServiceUnavailable, cause: err,
			msg: fmt.Sprintf("Backup %s could not be restored. %s Try again in a few minutes; if it persists, give your operator request id %s.", stamp, kept, rid)}
	}
}

// interruptedRestore is the last operation of a restore that a restart of
// the broker cut short: the agent finished or undid its part on its own, so
// the instance holds its previous data or the whole backup, never a mix.
// restoring is whether a restore of inst ran when its record was read, or
// just before: it is marked running before its record says in progress,
// and its outcome is stored before the mark goes.
func (b *Broker) interruptedRestore(inst *instance, restoring bool) (domain.LastOperation, bool) {
	if inst.LastOp.Type != restoreOperation || inst.LastOp.State != domain.InProgress || restoring {
		return domain.LastOperation{}, false
	}
	return domain.LastOperation{State: domain.Failed,
		Description: "The restore was interrupted by a restart of the service broker. The instance holds either its previous data or the whole backup; run the restore again."}, true
}
