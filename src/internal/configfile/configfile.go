// Package configfile loads a program's one JSON config file strictly: an
// unknown or misspelt field is an error, and so is anything the config's own
// Validate rejects.
package configfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// Validator is a config that can check itself, naming the dotted path of the
// first bad field.
type Validator interface {
	Validate() error
}

// Load reads path into v (a pointer to a config struct with its defaults
// already set) and validates it.
func Load(path string, v Validator) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	return Decode(data, v)
}

// Decode is Load for config bytes already read.
func Decode(data []byte, v Validator) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("config is not valid: %w", err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return errors.New("config is not valid: extra data after the JSON object")
	}
	if err := v.Validate(); err != nil {
		return fmt.Errorf("config is not valid: %w", err)
	}
	return nil
}
