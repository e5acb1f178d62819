package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	wd, _ := os.Getwd()
	os.Exit(execute(context.Background(), os.Args[1:], env{lookup: os.LookupEnv, environ: os.Environ, wd: wd}, os.Stdout, os.Stderr, sig))
}
