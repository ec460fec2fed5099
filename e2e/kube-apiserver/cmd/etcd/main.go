// Command etcd is the upstream etcd server, unmodified: kube-apiserver's storage for the
// tests and the local demo. It takes etcd's own flags.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
