// Package ids says what node, instance and binding ids may look like. They
// become directory names and ACL usernames, so no '/', no ':', no leading
// '.', no spaces: 1-128 letters, digits, '.', '_' or '-', starting with a
// letter or digit.
package ids

import (
	"fmt"
	"regexp"
)

var pattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Rule is the rule of Valid in words, for messages.
const Rule = "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"

// Valid reports whether id may be a node, instance or binding id.
func Valid(id string) bool { return pattern.MatchString(id) }

// Check returns invalid, explained, when id is not a valid id; what names
// the id in the message ("instance id", "binding id").
func Check(what, id string, invalid error) error {
	if !Valid(id) {
		return fmt.Errorf("%w: %s must be %s", invalid, what, Rule)
	}
	return nil
}
