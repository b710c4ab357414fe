package localvm_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestLocalVM(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "localvm")
}
