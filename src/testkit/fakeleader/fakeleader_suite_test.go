package fakeleader_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestFakeleader(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "fakeleader")
}
