// Package system holds the tests that run against real servers the scripts
// start, not against kfake: they build only with the tag "system", so that
// `go test ./...` needs no server.
//
//	./scripts/kafka install && eval "$(./scripts/kafka start /tmp/kafka)"
//	go test -tags system ./system/
//	./scripts/kafka stop /tmp/kafka
//
// Run with the tag but without the environment of a started cluster, a test
// fails (it never skips) and says how to start one. docs/kafka.md.
package system
