package ccapitest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/osbhttp"
)

func (s *Server) ccRoutes() http.Handler {
	v3 := http.NewServeMux()
	v3.HandleFunc("GET /v3/service_brokers", s.listBrokers)
	v3.HandleFunc("POST /v3/service_brokers", s.createBroker)
	v3.HandleFunc("PATCH /v3/service_brokers/{guid}", s.updateBroker)
	v3.HandleFunc("DELETE /v3/service_brokers/{guid}", s.deleteBroker)
	v3.HandleFunc("GET /v3/jobs/{guid}", s.getJob)
	v3.HandleFunc("GET /v3/service_plans", s.listPlans)
	v3.HandleFunc("GET /v3/service_offerings", s.listOfferings)
	v3.HandleFunc("DELETE /v3/service_offerings/{guid}", s.deleteOffering)
	v3.HandleFunc("GET /v3/service_plans/{guid}/visibility", s.getVisibility)
	v3.HandleFunc("POST /v3/service_plans/{guid}/visibility", s.setVisibility)
	v3.HandleFunc("PATCH /v3/service_plans/{guid}/visibility", s.setVisibility)
	v3.HandleFunc("GET /v3/organizations", s.listOrgs)
	v3.HandleFunc("GET /v3/service_instances", s.listInstances)
	v3.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		ccError(w, http.StatusNotFound, 10000, "CF-NotFound", "Unknown request")
	})

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.root)
	mux.HandleFunc("/v3/", func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			ccError(w, http.StatusUnauthorized, 1000, "CF-InvalidAuthToken", "Invalid Auth Token")
			return
		}
		v3.ServeHTTP(w, r)
	})
	return mux
}

// root is GET /: the links that name UAA, with no token needed.
func (s *Server) root(w http.ResponseWriter, r *http.Request) {
	link := func(u string) map[string]string { return map[string]string{"href": u} }
	writeJSON(w, http.StatusOK, map[string]any{"links": map[string]any{
		"self":                link(s.URL),
		"cloud_controller_v3": map[string]any{"href": s.URL + "/v3", "meta": map[string]string{"version": "3.180.0"}},
		"uaa":                 link(s.UAAURL),
		"login":               link(s.UAAURL),
		"credhub":             nil,
	}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func ccError(w http.ResponseWriter, status, code int, title, detail string) {
	writeJSON(w, status, map[string]any{"errors": []apiError{{Code: code, Title: title, Detail: detail}}})
}

// unprocessable answers Cloud Controller's 422 with detail.
func unprocessable(w http.ResponseWriter, detail string) {
	ccError(w, http.StatusUnprocessableEntity, 10008, "CF-UnprocessableEntity", detail)
}

// lookup returns the value of m named by the request's {guid}, or answers
// Cloud Controller's 404 for what and returns nil.
func lookup[T any](w http.ResponseWriter, r *http.Request, m map[string]*T, what string) *T {
	v := m[r.PathValue("guid")]
	if v == nil {
		ccError(w, http.StatusNotFound, 10010, "CF-ResourceNotFound", what+" not found")
	}
	return v
}

// paginate writes one page of items, with Cloud Controller's pagination
// links.
func (s *Server) paginate(w http.ResponseWriter, r *http.Request, items []any) {
	perPage := s.opts.PerPage
	if n, err := strconv.Atoi(r.URL.Query().Get("per_page")); err == nil && n > 0 && n < perPage {
		perPage = n
	}
	pageNo := 1
	if n, err := strconv.Atoi(r.URL.Query().Get("page")); err == nil && n > 0 {
		pageNo = n
	}
	total := len(items)
	pages := max(1, (total+perPage-1)/perPage)
	link := func(p int) map[string]string {
		q := r.URL.Query()
		q.Set("page", strconv.Itoa(p))
		q.Set("per_page", strconv.Itoa(perPage))
		return map[string]string{"href": s.URL + r.URL.Path + "?" + q.Encode()}
	}
	pagination := map[string]any{
		"total_results": total, "total_pages": pages, "first": link(1), "last": link(pages), "next": nil, "previous": nil,
	}
	if pageNo < pages {
		pagination["next"] = link(pageNo + 1)
	}
	if pageNo > 1 {
		pagination["previous"] = link(pageNo - 1)
	}
	from, to := min((pageNo-1)*perPage, total), min(pageNo*perPage, total)
	writeJSON(w, http.StatusOK, map[string]any{"pagination": pagination, "resources": append([]any{}, items[from:to]...)})
}

// list answers a page of the items collect returns with s.mu held; keep
// tells collect whether a value passes the filter of query parameter param
// (comma-separated values; every value passes when it is absent).
func (s *Server) list(w http.ResponseWriter, r *http.Request, param string, collect func(keep func(string) bool) []any) {
	var values []string
	if r.URL.Query().Has(param) {
		values = strings.Split(r.URL.Query().Get(param), ",")
	}
	keep := func(v string) bool { return values == nil || slices.Contains(values, v) }
	s.mu.Lock()
	items := collect(keep)
	s.mu.Unlock()
	s.paginate(w, r, items)
}

func (s *Server) brokerJSON(b *Broker) map[string]any {
	return map[string]any{
		"guid": b.GUID, "name": b.Name, "url": b.URL,
		"relationships": map[string]any{},
		"links":         map[string]any{"self": map[string]string{"href": s.URL + "/v3/service_brokers/" + b.GUID}},
	}
}

func (s *Server) listBrokers(w http.ResponseWriter, r *http.Request) {
	s.list(w, r, "names", func(keep func(string) bool) (items []any) {
		for _, b := range sortedValues(s.brokers, func(b *Broker) string { return b.Name }) {
			if keep(b.Name) {
				items = append(items, s.brokerJSON(b))
			}
		}
		return items
	})
}

// brokerRequest is the body of POST and PATCH /v3/service_brokers.
type brokerRequest struct {
	Name           *string `json:"name"`
	URL            *string `json:"url"`
	Authentication *struct {
		Type        string `json:"type"`
		Credentials struct {
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"credentials"`
	} `json:"authentication"`
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	d := json.NewDecoder(r.Body)
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		unprocessable(w, "The request body is invalid: "+err.Error())
		return false
	}
	return true
}

func (s *Server) createBroker(w http.ResponseWriter, r *http.Request) {
	var req brokerRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Name == nil || *req.Name == "" || req.URL == nil || req.Authentication == nil ||
		req.Authentication.Type != "basic" || req.Authentication.Credentials.Username == "" || req.Authentication.Credentials.Password == "" {
		unprocessable(w, "Name must be a string, Url must be a string, Authentication must be basic with a username and password")
		return
	}
	if u, err := url.Parse(*req.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		unprocessable(w, "Url must be a valid url")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.brokers {
		if b.Name == *req.Name {
			unprocessable(w, fmt.Sprintf("Name must be unique: %s", b.Name))
			return
		}
	}
	b := &Broker{GUID: newGUID(), Name: *req.Name, URL: *req.URL, State: "synchronizing",
		Username: req.Authentication.Credentials.Username, Password: req.Authentication.Credentials.Password}
	s.brokers[b.GUID] = b
	s.startJob(w, "service_broker.catalog.synchronize", func() []apiError { return s.synchronize(b.GUID) })
}

func (s *Server) updateBroker(w http.ResponseWriter, r *http.Request) {
	var req brokerRequest
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := lookup(w, r, s.brokers, "Service broker")
	if b == nil {
		return
	}
	if b.State == "synchronizing" || b.State == "delete in progress" {
		unprocessable(w, "Cannot update a broker when other operation is already in progress")
		return
	}
	if req.Name != nil {
		for _, o := range s.brokers {
			if o.GUID != b.GUID && o.Name == *req.Name {
				unprocessable(w, "Name must be unique")
				return
			}
		}
		b.Name = *req.Name
	}
	if req.URL == nil && req.Authentication == nil {
		// Only the name (or metadata): no catalog to read again.
		writeJSON(w, http.StatusOK, s.brokerJSON(b))
		return
	}
	if req.URL != nil {
		b.URL = *req.URL
	}
	if req.Authentication != nil {
		b.Username, b.Password = req.Authentication.Credentials.Username, req.Authentication.Credentials.Password
	}
	b.State = "synchronizing"
	s.startJob(w, "service_broker.update", func() []apiError { return s.synchronize(b.GUID) })
}

func (s *Server) deleteBroker(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := lookup(w, r, s.brokers, "Service broker")
	if b == nil {
		return
	}
	b.State = "delete in progress"
	guid := b.GUID
	s.startJob(w, "service_broker.delete", func() []apiError {
		s.mu.Lock()
		defer s.mu.Unlock()
		b := s.brokers[guid]
		for _, i := range s.instance {
			if p := s.plans[i.PlanGUID]; p != nil && p.BrokerGUID == guid {
				b.State = "available"
				return []apiError{{Code: 270010, Title: "CF-ServiceBrokerNotRemovable",
					Detail: fmt.Sprintf("Can not remove brokers that have associated service instances: %s", b.Name)}}
			}
		}
		for g, p := range s.plans {
			if p.BrokerGUID == guid {
				delete(s.plans, g)
			}
		}
		delete(s.brokers, guid)
		return nil
	})
}

// startJob answers 202 with the Location of a job that runs work after the
// job delay; called with s.mu held.
func (s *Server) startJob(w http.ResponseWriter, operation string, work func() []apiError) {
	j := &job{guid: newGUID(), operation: operation, state: "PROCESSING"}
	s.jobState[j.guid] = j
	s.jobs.Add(1)
	go func() {
		defer s.jobs.Done()
		time.Sleep(s.opts.JobDelay)
		errs := work()
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(errs) > 0 {
			j.state, j.errors = "FAILED", errs
		} else {
			j.state = "COMPLETE"
		}
	}()
	w.Header().Set("Location", s.URL+"/v3/jobs/"+j.guid)
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := lookup(w, r, s.jobState, "Job")
	if j == nil {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"guid": j.guid, "operation": j.operation, "state": j.state,
		"errors": append([]apiError{}, j.errors...), "warnings": []any{},
		"links": map[string]any{"self": map[string]string{"href": s.URL + "/v3/jobs/" + j.guid}},
	})
}

// catalog is the part of an OSB catalog Cloud Controller reads here.
type catalog struct {
	Services []struct {
		ID    string `json:"id"`
		Name  string `json:"name"`
		Plans []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"plans"`
	} `json:"services"`
}

// synchronize reads a broker's catalog, as Cloud Controller does, and
// records its plans: a new plan is visible to admins only; a plan already
// known keeps its guid and visibility; a plan gone from the catalog goes.
func (s *Server) synchronize(guid string) []apiError {
	s.mu.Lock()
	registered := s.brokers[guid]
	if registered == nil {
		s.mu.Unlock()
		return []apiError{{Code: 10010, Title: "CF-ResourceNotFound", Detail: "Service broker not found"}}
	}
	b := *registered
	s.mu.Unlock()
	cat, apiErr := fetchCatalog(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	broker := s.brokers[guid]
	if broker == nil {
		return []apiError{{Code: 10010, Title: "CF-ResourceNotFound", Detail: "Service broker not found"}}
	}
	if apiErr != nil {
		broker.State = "synchronization failed"
		return []apiError{*apiErr}
	}
	kept := map[string]bool{}
	for _, svc := range cat.Services {
		serviceGUID := ""
		for _, p := range s.plans {
			if p.BrokerGUID == guid && p.ServiceName == svc.Name {
				serviceGUID = p.ServiceGUID
			}
		}
		if serviceGUID == "" {
			serviceGUID = newGUID()
		}
		for _, cp := range svc.Plans {
			var plan *Plan
			for _, p := range s.plans {
				if p.BrokerGUID == guid && p.CatalogID == cp.ID {
					plan = p
				}
			}
			if plan == nil {
				plan = &Plan{GUID: newGUID(), BrokerGUID: guid, CatalogID: cp.ID, Visibility: "admin"}
				s.plans[plan.GUID] = plan
			}
			plan.Name, plan.ServiceName, plan.ServiceGUID = cp.Name, svc.Name, serviceGUID
			kept[plan.GUID] = true
		}
	}
	for g, p := range s.plans {
		if p.BrokerGUID == guid && !kept[g] {
			delete(s.plans, g)
		}
	}
	broker.State = "available"
	return nil
}

// fetchCatalog calls the broker's GET /v2/catalog with its registered
// credentials, and words failures as Cloud Controller does.
func fetchCatalog(b Broker) (*catalog, *apiError) {
	catalogURL := strings.TrimSuffix(b.URL, "/") + "/v2/catalog"
	c := osbhttp.Client{URL: b.URL, Username: b.Username, Password: b.Password, HTTP: &http.Client{Timeout: 10 * time.Second}}
	resp, err := c.Do(context.Background(), http.MethodGet, "/v2/catalog", nil, nil)
	if err != nil {
		return nil, &apiError{Code: 10001, Title: "CF-ServiceBrokerApiUnreachable", Detail: "The service broker could not be reached: " + catalogURL}
	}
	body := resp.Body
	switch {
	case resp.Status == http.StatusUnauthorized:
		return nil, &apiError{Code: 10001, Title: "CF-ServiceBrokerApiAuthenticationFailed",
			Detail: "Authentication failed for the service broker API. Double-check that the username and password are correct: " + catalogURL}
	case resp.Status != http.StatusOK:
		return nil, &apiError{Code: 10001, Title: "CF-ServiceBrokerBadResponse",
			Detail: fmt.Sprintf("The service broker returned an invalid response: expected 200, got %d: %s", resp.Status, strings.TrimSpace(string(body)))}
	}
	var cat catalog
	if err := json.Unmarshal(body, &cat); err != nil {
		return nil, &apiError{Code: 10001, Title: "CF-ServiceBrokerResponseMalformed",
			Detail: "The service broker returned an invalid response: expected valid JSON object in body"}
	}
	if len(cat.Services) == 0 {
		return nil, &apiError{Code: 270012, Title: "CF-ServiceBrokerCatalogInvalid", Detail: "Service broker catalog is invalid: \nService broker must provide at least one service\n"}
	}
	for _, svc := range cat.Services {
		if svc.ID == "" || svc.Name == "" || len(svc.Plans) == 0 {
			return nil, &apiError{Code: 270012, Title: "CF-ServiceBrokerCatalogInvalid",
				Detail: fmt.Sprintf("Service broker catalog is invalid: \nService %s\n  Service id, name and at least one plan are required\n", svc.Name)}
		}
	}
	return &cat, nil
}

func (s *Server) planJSON(p *Plan) map[string]any {
	return map[string]any{
		"guid": p.GUID, "name": p.Name, "visibility_type": p.Visibility,
		"broker_catalog": map[string]any{"id": p.CatalogID},
		"relationships": map[string]any{
			"service_offering": map[string]any{"data": map[string]string{"guid": p.ServiceGUID}},
		},
	}
}

func (s *Server) listPlans(w http.ResponseWriter, r *http.Request) {
	s.list(w, r, "service_broker_guids", func(keep func(string) bool) (items []any) {
		for _, p := range sortedValues(s.plans, func(p *Plan) string { return p.Name + p.GUID }) {
			if keep(p.BrokerGUID) {
				items = append(items, s.planJSON(p))
			}
		}
		return items
	})
}

func (s *Server) visibilityJSON(p *Plan) map[string]any {
	v := map[string]any{"type": p.Visibility}
	if p.Visibility == "organization" {
		var orgs []map[string]string
		for _, name := range slices.Sorted(slices.Values(p.Orgs)) {
			for guid, n := range s.orgs {
				if n == name {
					orgs = append(orgs, map[string]string{"guid": guid, "name": name})
				}
			}
		}
		v["organizations"] = orgs
	}
	return v
}

func (s *Server) getVisibility(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := lookup(w, r, s.plans, "Service plan")
	if p == nil {
		return
	}
	writeJSON(w, http.StatusOK, s.visibilityJSON(p))
}

// setVisibility is POST (organizations are added to those that see the
// plan) and PATCH (they replace them) of a plan's visibility.
func (s *Server) setVisibility(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Type          string `json:"type"`
		Organizations []struct {
			GUID string `json:"guid"`
		} `json:"organizations"`
	}
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := lookup(w, r, s.plans, "Service plan")
	if p == nil {
		return
	}
	switch req.Type {
	case "public", "admin":
		if len(req.Organizations) > 0 {
			unprocessable(w, "Organizations can only be given with type organization")
			return
		}
		p.Visibility, p.Orgs = req.Type, nil
	case "organization":
		if len(req.Organizations) == 0 {
			unprocessable(w, "Organizations can't be blank")
			return
		}
		var names []string
		for _, o := range req.Organizations {
			name, ok := s.orgs[o.GUID]
			if !ok {
				unprocessable(w, fmt.Sprintf("Could not find organization with guid %s", o.GUID))
				return
			}
			names = append(names, name)
		}
		if r.Method == http.MethodPost && p.Visibility == "organization" {
			names = append(names, p.Orgs...)
		}
		slices.Sort(names)
		p.Visibility, p.Orgs = "organization", slices.Compact(names)
	default:
		unprocessable(w, fmt.Sprintf("Type must be one of 'public', 'admin', 'organization', got %q", req.Type))
		return
	}
	writeJSON(w, http.StatusOK, s.visibilityJSON(p))
}

func (s *Server) listOrgs(w http.ResponseWriter, r *http.Request) {
	s.list(w, r, "names", func(keep func(string) bool) (items []any) {
		for _, guid := range slices.Sorted(maps.Keys(s.orgs)) {
			if keep(s.orgs[guid]) {
				items = append(items, map[string]any{"guid": guid, "name": s.orgs[guid]})
			}
		}
		return items
	})
}

func (s *Server) listInstances(w http.ResponseWriter, r *http.Request) {
	s.list(w, r, "service_plan_guids", func(keep func(string) bool) (items []any) {
		for _, i := range sortedValues(s.instance, func(i *ServiceInstance) string { return i.Name + i.GUID }) {
			if keep(i.PlanGUID) {
				items = append(items, map[string]any{
					"guid": i.GUID, "name": i.Name, "type": "managed",
					"relationships": map[string]any{"service_plan": map[string]any{"data": map[string]string{"guid": i.PlanGUID}}},
				})
			}
		}
		return items
	})
}

// offering is a service offering as the fake derives it from its plans:
// every plan records its offering's guid and name.
type offering struct{ guid, name, brokerGUID string }

// offerings returns the offerings of the registered plans; called with s.mu
// held.
func (s *Server) offerings() []offering {
	seen := map[string]offering{}
	for _, p := range s.plans {
		seen[p.ServiceGUID] = offering{guid: p.ServiceGUID, name: p.ServiceName, brokerGUID: p.BrokerGUID}
	}
	return sortedValues(seen, func(o offering) string { return o.name + o.guid })
}

func (s *Server) listOfferings(w http.ResponseWriter, r *http.Request) {
	s.list(w, r, "service_broker_guids", func(keep func(string) bool) (items []any) {
		for _, o := range s.offerings() {
			if keep(o.brokerGUID) {
				items = append(items, map[string]any{
					"guid": o.guid, "name": o.name,
					"relationships": map[string]any{"service_broker": map[string]any{"data": map[string]string{"guid": o.brokerGUID}}},
				})
			}
		}
		return items
	})
}

// deleteOffering is DELETE /v3/service_offerings/:guid. Like Cloud
// Controller's, it refuses an offering whose plans have instances unless
// purge=true; with it, the offering, its plans and their instances go from
// the records without a call to the broker (cf purge-service-offering).
func (s *Server) deleteOffering(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	guid := r.PathValue("guid")
	i := slices.IndexFunc(s.offerings(), func(o offering) bool { return o.guid == guid })
	if i < 0 {
		ccError(w, http.StatusNotFound, 10010, "CF-ResourceNotFound", "Service offering not found")
		return
	}
	var instances []string
	for g, inst := range s.instance {
		if p := s.plans[inst.PlanGUID]; p != nil && p.ServiceGUID == guid {
			instances = append(instances, g)
		}
	}
	if len(instances) > 0 && r.URL.Query().Get("purge") != "true" {
		ccError(w, http.StatusUnprocessableEntity, 10008, "CF-UnprocessableEntity",
			"Please delete the service_instances associations for your services.")
		return
	}
	for _, g := range instances {
		delete(s.instance, g)
	}
	for g, p := range s.plans {
		if p.ServiceGUID == guid {
			delete(s.plans, g)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func sortedValues[T any](m map[string]T, key func(T) string) []T {
	out := slices.Collect(maps.Values(m))
	slices.SortFunc(out, func(a, b T) int { return strings.Compare(key(a), key(b)) })
	return out
}
