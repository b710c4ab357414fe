package broker

import (
	"context"
	"strconv"

	"code.cloudfoundry.org/brokerapi/v13/domain"

	"github.com/cf-redis/redis-for-cf/src/internal/params"
)

// Services returns the catalog: one service, tagged "redis" so buildpacks
// and libraries such as java-cfenv recognise its credentials, with the plans
// of the config.
func (b *Broker) Services(ctx context.Context) ([]domain.Service, error) {
	c := b.cfg.Catalog
	shareable := c.Shareable
	var plans []domain.ServicePlan
	for _, p := range b.order {
		plans = append(plans, p.entry())
	}
	return []domain.Service{{
		ID:                   c.ServiceID,
		Name:                 c.ServiceName,
		Description:          c.Description,
		Bindable:             true,
		InstancesRetrievable: true,
		BindingsRetrievable:  true,
		PlanUpdatable:        true,
		Tags:                 []string{"redis", "key-value", "pivotal"},
		Metadata: &domain.ServiceMetadata{
			DisplayName:         c.DisplayName,
			LongDescription:     c.Description,
			DocumentationUrl:    "https://redis.io/docs/",
			ProviderDisplayName: "Redis for Cloud Foundry",
			Shareable:           &shareable,
		},
		Plans: plans,
	}}, nil
}

func (b *Broker) catalogPlan(id, name, description, displayName string, bullets []string) domain.ServicePlan {
	yes, free := true, true
	return domain.ServicePlan{
		ID:              id,
		Name:            name,
		Description:     description,
		Free:            &free,
		Bindable:        &yes,
		Metadata:        &domain.ServicePlanMetadata{DisplayName: displayName, Bullets: bullets},
		MaintenanceInfo: b.maintenanceInfo(),
		Schemas: &domain.ServiceSchemas{
			Instance: domain.ServiceInstanceSchema{
				Create: domain.Schema{Parameters: params.Schema()},
				Update: domain.Schema{Parameters: updateSchema()},
			},
			Binding: domain.ServiceBindingSchema{
				Create: domain.Schema{Parameters: params.EmptySchema()},
			},
		},
	}
}

func (b *Broker) maintenanceInfo() *domain.MaintenanceInfo {
	return &domain.MaintenanceInfo{
		Version:     b.cfg.Catalog.MaintenanceVersion,
		Description: "redis-server 7 with AOF everysec and RDB snapshots",
	}
}

// knownPlan reports whether planID is a plan of the catalog.
func (b *Broker) knownPlan(planID string) bool {
	_, ok := b.plans[planID]
	return ok
}

func formatMB(mb int64) string {
	if mb%1024 == 0 {
		return strconv.FormatInt(mb/1024, 10) + " GB"
	}
	return strconv.FormatInt(mb, 10) + " MB"
}
