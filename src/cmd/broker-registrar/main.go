// Command broker-registrar is the errand that registers the Redis service
// broker with Cloud Foundry's Cloud Controller (v3 API), or updates its
// registration, and opens its plans to every org or to a list of orgs. Run
// it after every deploy: it is idempotent.
//
//	broker-registrar -config FILE
//
// Exit status: 0 done, 1 Cloud Controller or UAA refused or could not be
// reached (the reason is on stderr), 2 bad usage or config.
package main

import (
	"os"

	"github.com/cf-redis/redis-for-cf/src/internal/registrar"
)

func main() {
	var cfg registrar.Config
	os.Exit(registrar.Main("broker-registrar", &cfg, registrar.Register))
}
