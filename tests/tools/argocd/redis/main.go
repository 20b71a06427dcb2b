// Command redis is the Redis Argo CD's repo-server and application controller cache in: an
// in-memory miniredis on 127.0.0.1 (the port is the first argument), as `argocd --core` runs.
package main

import (
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/alicebob/miniredis/v2"
)

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: argocd-redis PORT")
	}
	server := miniredis.NewMiniRedis()
	if err := server.StartAddr("127.0.0.1:" + os.Args[1]); err != nil {
		log.Fatalf("starting miniredis: %v", err)
	}
	log.Printf("miniredis listening on %s", server.Addr())
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	<-signals
	server.Close()
}
