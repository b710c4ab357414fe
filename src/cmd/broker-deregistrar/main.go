// Command broker-deregistrar is the errand that removes the Redis service
// broker from Cloud Foundry's Cloud Controller (v3 API). Run it before
// deleting the deployment. It refuses while the broker's plans have service
// instances, unless its config says to purge them from Cloud Controller.
//
//	broker-deregistrar -config FILE
//
// Exit status: 0 done (or nothing was registered), 1 refused or failed (the
// reason is on stderr), 2 bad usage or config.
package main

import (
	"os"

	"github.com/cf-redis/redis-for-cf/src/internal/registrar"
)

func main() {
	var cfg registrar.DeregisterConfig
	os.Exit(registrar.Main("broker-deregistrar", &cfg, registrar.Deregister))
}
