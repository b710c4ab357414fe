package hostile_test

import (
	"net/http"

	. "github.com/onsi/gomega"
)

// reservedBindingIDs are binding ids that name users the platform keeps on
// every instance: Redis's default user and the agents' admin.
var reservedBindingIDs = []string{"default", "platform-admin"}

// expectReservedIDsRefused: a bind with a reserved id is a 400 that says
// why; the instance then binds normally and deletes cleanly.
func expectReservedIDsRefused(sys *system, p plan) {
	id := newID("ids")
	sys.provisionForSpec(p, id)
	for _, bindingID := range reservedBindingIDs {
		code, body := sys.bindRaw(p, id, bindingID)
		Expect(code).To(Equal(http.StatusBadRequest), "bind with binding_id %q: %v", bindingID, body)
		Expect(body["description"]).To(And(BeAssignableToTypeOf(""), Not(BeEmpty())), "bind with binding_id %q: %v", bindingID, body)
	}
	creds := sys.bind(p, id, newID("app"))
	Expect(ping(creds)).To(Succeed())
	sys.deprovision(p, id)
}
