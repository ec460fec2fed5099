// Command kube-apiserver is the upstream Kubernetes API server, unmodified: this file only
// links k8s.io/kubernetes/cmd/kube-apiserver/app into a binary of our own so that the tests
// and the local demo run against the real admission chain, RBAC, CEL and OpenAPI handling.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
