package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestVCAPServices(t *testing.T) {
	catalog := `{"services":[{"name":"p-redis","tags":["redis","pivotal"],"plans":[{"id":"p1","name":"shared-vm"},{"id":"p2","name":"dedicated-vm"}]}]}`
	binding := `{"credentials":{"host":"127.0.0.1","port":32768,"password":"pw"}}`
	env := map[string]string{"CATALOG": catalog, "BINDING": binding}
	var out, errs bytes.Buffer
	if code := run([]string{"-plan-id", "p2", "-instance", "my-redis", "-binding-guid", "b1"}, func(k string) string { return env[k] }, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	var got map[string][]struct {
		Label, Plan, Name string
		Tags              []string
		Credentials       map[string]any
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	s := got["p-redis"]
	if len(s) != 1 || s[0].Label != "p-redis" || s[0].Plan != "dedicated-vm" || s[0].Name != "my-redis" ||
		strings.Join(s[0].Tags, ",") != "redis,pivotal" || s[0].Credentials["password"] != "pw" || s[0].Credentials["port"] != 32768.0 {
		t.Fatalf("VCAP_SERVICES: %s", out.String())
	}

	for name, e := range map[string]map[string]string{
		"unknown plan":   {"CATALOG": catalog, "BINDING": binding},
		"no credentials": {"CATALOG": catalog, "BINDING": `{}`},
		"bad catalog":    {"CATALOG": `[`, "BINDING": binding},
	} {
		plan := "p1"
		if name == "unknown plan" {
			plan = "nope"
		}
		errs.Reset()
		if code := run([]string{"-plan-id", plan}, func(k string) string { return e[k] }, &out, &errs); code != 1 || errs.Len() == 0 {
			t.Errorf("%s: exit %d, stderr %q", name, code, errs.String())
		}
	}
}
