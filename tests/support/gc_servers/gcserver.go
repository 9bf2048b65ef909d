// Test server for perfsleuth's Go GC probe (tests/functional/test_probes_gc_go.py).
//
// A stdlib-only HTTP server: every request allocates short-lived garbage and keeps a
// slice of it in a bounded ring, so the collector runs real cycles under load. It
// listens on 127.0.0.1 at the port given by -port (0 = any free port), prints
// "PORT <n>" on stdout once it accepts connections, and, with -stderr-lines, writes a
// few lines of its own to stderr at start so tests can check they are passed through.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
)

const ringSlots = 256

var (
	ringMu   sync.Mutex
	ring     [ringSlots][]byte
	ringNext int
)

func keep(chunk []byte) {
	ringMu.Lock()
	ring[ringNext] = chunk
	ringNext = (ringNext + 1) % ringSlots
	ringMu.Unlock()
}

func handle(w http.ResponseWriter, _ *http.Request) {
	var checksum int
	// About 4 MiB of garbage per request in 4 KiB chunks.
	for i := 0; i < 1024; i++ {
		chunk := make([]byte, 4096)
		chunk[i%len(chunk)] = byte(i)
		checksum += int(chunk[i%len(chunk)])
		if i%64 == 0 {
			keep(chunk)
		}
	}
	fmt.Fprintf(w, "ok %d\n", checksum)
}

func main() {
	port := flag.Int("port", 0, "TCP port on 127.0.0.1; 0 picks a free one")
	stderrLines := flag.Int("stderr-lines", 0, "lines to write to stderr at start")
	flag.Parse()
	for i := 0; i < *stderrLines; i++ {
		fmt.Fprintf(os.Stderr, "gcserver: own stderr line %d\n", i)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "gcserver:", err)
		os.Exit(1)
	}
	fmt.Printf("PORT %d\n", ln.Addr().(*net.TCPAddr).Port)
	http.HandleFunc("/", handle)
	if err := http.Serve(ln, nil); err != nil {
		fmt.Fprintln(os.Stderr, "gcserver:", err)
		os.Exit(1)
	}
}
