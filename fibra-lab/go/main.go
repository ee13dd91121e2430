// The Go peer of fibra-lab: goroutines measured the way the Rust peers measure fibers, tasks
// and threads (fibra-lab/src/peers/). It speaks the lab's child protocol (src/child.rs):
//
//	fibra-lab-go child <experiment> go <n> --workers <w> [--case <c>]
//
// runs one measurement with GOMAXPROCS=w and prints ONE JSON line {"figures":{...}} on stdout,
// or a reason on stderr and exits 1. Figure keys match the Rust peers'.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type figures map[string]float64

func main() {
	experiment, n, workers, chanCase, err := parseArgs(os.Args[1:])
	if err != nil {
		fail(err.Error())
	}
	runtime.GOMAXPROCS(workers)
	var f figures
	switch experiment {
	case "spawn":
		f, err = spawn(n)
	case "switch":
		f, err = switchPingPong(n, workers)
	case "churn":
		f, err = churn(n)
	case "chan":
		f, err = chanExperiment(chanCase, n)
	case "blocking":
		f, err = blocking(n)
	case "io":
		err = serveHTTP()
	case "fs":
		f, err = fsReads(n, chanCase)
	case "client":
		f, err = httpClient(n, chanCase)
	default:
		err = fmt.Errorf("the Go peer has no %q experiment", experiment)
	}
	if err != nil {
		fail(err.Error())
	}
	line, err := json.Marshal(map[string]figures{"figures": f})
	if err != nil {
		fail("could not encode figures: " + err.Error())
	}
	fmt.Println(string(line))
}

func fail(reason string) {
	fmt.Fprintln(os.Stderr, strings.ReplaceAll(reason, "\n", " "))
	os.Exit(1)
}

// child <experiment> go <n> --workers <w> [--case <c>]
func parseArgs(args []string) (experiment string, n uint64, workers int, chanCase string, err error) {
	usage := fmt.Errorf("usage: child <experiment> go <n> --workers <w> [--case <c>], got %q", args)
	var positional []string
	workers = 1
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--workers", "--case":
			if i+1 >= len(args) {
				return "", 0, 0, "", usage
			}
			if args[i] == "--workers" {
				if workers, err = strconv.Atoi(args[i+1]); err != nil || workers < 1 {
					return "", 0, 0, "", usage
				}
			} else {
				chanCase = args[i+1]
			}
			i++
		default:
			positional = append(positional, args[i])
		}
	}
	if len(positional) != 4 || positional[0] != "child" || positional[2] != "go" {
		return "", 0, 0, "", usage
	}
	if n, err = strconv.ParseUint(positional[3], 10, 64); err != nil {
		return "", 0, 0, "", usage
	}
	return positional[1], n, workers, chanCase, nil
}

// VmRSS of this process, in bytes.
func vmRSS() (uint64, error) {
	file, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer file.Close()
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		if line := scanner.Text(); strings.HasPrefix(line, "VmRSS:") {
			rest := strings.TrimPrefix(line, "VmRSS:")
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/self/status")
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// spawn: N goroutines that each sleep 100 ms (see src/experiments/spawn.rs).
func spawn(n uint64) (figures, error) {
	const unitSleep, sampleAfter = 100 * time.Millisecond, 50 * time.Millisecond
	var live int64
	var wg sync.WaitGroup
	before, err := vmRSS()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	for i := uint64(0); i < n; i++ {
		atomic.AddInt64(&live, 1)
		wg.Add(1)
		go func() {
			time.Sleep(unitSleep)
			atomic.AddInt64(&live, -1)
			wg.Done()
		}()
	}
	spawned := time.Since(t0)
	time.Sleep(sampleAfter)
	during, err := vmRSS()
	if err != nil {
		return nil, err
	}
	alive := atomic.LoadInt64(&live)
	wg.Wait()
	wall := time.Since(t0)
	delta := float64(0)
	if during > before {
		delta = float64(during - before)
	}
	return figures{
		"spawn_ms":           ms(spawned),
		"wall_ms":            ms(wall),
		"rss_per_unit_bytes": delta / float64(maxU64(n, 1)),
		"rss_delta_bytes":    delta,
		"alive_at_sample":    float64(alive),
	}, nil
}

func maxU64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// switch: two goroutines ping-pong over two unbuffered channels (Go has no park/unpark; a
// channel hand-off is its native wake-up). Placement is sampled every 1024 round trips.
func switchPingPong(rounds uint64, workers int) (figures, error) {
	const sampleEvery = 1024
	ping, pong := make(chan struct{}), make(chan struct{})
	var echoThreads []int
	done := make(chan struct{})
	t0 := time.Now()
	go func() {
		for i := uint64(0); i < rounds; i++ {
			<-ping
			if i%sampleEvery == 0 {
				echoThreads = append(echoThreads, syscall.Gettid())
			}
			pong <- struct{}{}
		}
		close(done)
	}()
	var mine []int
	for i := uint64(0); i < rounds; i++ {
		if i%sampleEvery == 0 {
			mine = append(mine, syscall.Gettid())
		}
		ping <- struct{}{}
		<-pong
	}
	<-done
	elapsed := time.Since(t0)
	same, pairs := 0, len(mine)
	if len(echoThreads) < pairs {
		pairs = len(echoThreads)
	}
	for i := 0; i < pairs; i++ {
		if mine[i] == echoThreads[i] {
			same++
		}
	}
	f := figures{
		"ns_per_round_trip": float64(elapsed.Nanoseconds()) / float64(maxU64(rounds, 1)),
		"elapsed_ms":        ms(elapsed),
	}
	if pairs > 0 {
		f["same_thread_pct"] = float64(same) * 100 / float64(pairs)
	}
	return f, nil
}

// churn: spawn a batch of 10k empty goroutines, wait for them all, repeat.
func churn(n uint64) (figures, error) {
	const batch = 10_000
	t0 := time.Now()
	for done := uint64(0); done < n; {
		size := n - done
		if size > batch {
			size = batch
		}
		var wg sync.WaitGroup
		wg.Add(int(size))
		for i := uint64(0); i < size; i++ {
			go wg.Done()
		}
		wg.Wait()
		done += size
	}
	elapsed := time.Since(t0)
	return figures{
		"ns_per_unit": float64(elapsed.Nanoseconds()) / float64(maxU64(n, 1)),
		"elapsed_ms":  ms(elapsed),
	}, nil
}

// The cases of src/experiments/chan.rs.
const many = 8

func chanExperiment(chanCase string, n uint64) (figures, error) {
	t0 := time.Now()
	ops := n
	switch chanCase {
	case "ping-pong":
		pingPong(n)
	case "1p-bounded128", "8p-bounded128", "1p-bounded0", "8p-bounded0":
		producers := uint64(1)
		if chanCase[0] == '8' {
			producers = many
		}
		capacity := 128
		if strings.HasSuffix(chanCase, "bounded0") {
			capacity = 0
		}
		if sum := produce(producers, n, capacity); sum != n*(n-1)/2 {
			return nil, fmt.Errorf("items lost: sum %d", sum)
		}
	case "mutex", "rwlock":
		ops = many * n
		if total := contend(n, chanCase == "rwlock"); total != ops {
			return nil, fmt.Errorf("lost increments: %d", total)
		}
	case "1p-unbounded", "8p-unbounded":
		return nil, fmt.Errorf("Go has no unbounded channel")
	default:
		return nil, fmt.Errorf("unknown chan case %q", chanCase)
	}
	elapsed := time.Since(t0)
	secs := elapsed.Seconds()
	return figures{
		"ns_per_op":  secs * 1e9 / float64(maxU64(ops, 1)),
		"mops":       float64(ops) / secs / 1e6,
		"elapsed_ms": secs * 1e3,
	}, nil
}

// n round trips with an echo goroutine over two channels of capacity 1 (bounded(1)).
func pingPong(n uint64) {
	ping, pong := make(chan uint64, 1), make(chan uint64, 1)
	go func() {
		for v := range ping {
			pong <- v
		}
	}()
	for i := uint64(0); i < n; i++ {
		ping <- i
		<-pong
	}
	close(ping)
}

// The values producer p of `producers` sends out of n (as share() in chan.rs).
func share(p, producers, n uint64) (uint64, uint64) {
	each := n / producers
	start := n%producers + p*each
	if p == 0 {
		start = 0
	}
	return start, n%producers + (p+1)*each
}

// producers goroutines send n items in total through a channel of `capacity`; returns the sum
// the consumer (this goroutine) received.
func produce(producers, n uint64, capacity int) uint64 {
	ch := make(chan uint64, capacity)
	var wg sync.WaitGroup
	for p := uint64(0); p < producers; p++ {
		wg.Add(1)
		go func(p uint64) {
			defer wg.Done()
			start, end := share(p, producers, n)
			for i := start; i < end; i++ {
				ch <- i
			}
		}(p)
	}
	go func() {
		wg.Wait()
		close(ch)
	}()
	sum := uint64(0)
	for v := range ch {
		sum += v
	}
	return sum
}

// `many` goroutines each lock, increment and unlock one sync.Mutex (rw: a sync.RWMutex's
// write lock) n times.
func contend(n uint64, rw bool) uint64 {
	var mu sync.Locker = &sync.Mutex{}
	if rw {
		mu = &sync.RWMutex{} // Lock/Unlock: the write lock
	}
	var wg sync.WaitGroup
	counter := uint64(0)
	for u := 0; u < many; u++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(0); i < n; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return counter
}

// blocking: one goroutine blocks 1 s (a raw nanosleep syscall, or a CPU loop) while 1,000 others
// sleep 1 ms in a loop; the others' lateness (src/experiments/blocking.rs, Board). `n` encodes
// kind*10 + mode; only mode 0 (unwrapped) exists here.
func blocking(n uint64) (figures, error) {
	const units = 1000
	const tick, blockFor, warmUp = time.Millisecond, time.Second, 300 * time.Millisecond
	if n%10 != 0 {
		return nil, fmt.Errorf("the Go peer has only the unwrapped blocking rows")
	}
	spin := n/10 != 0
	var phase int32 // 0 warm-up, 1 blocking, 2 after
	var stop int32
	type unitLog struct {
		home   int
		lateUs []float64
		wakes  int
	}
	logs := make([]unitLog, units)
	var wg sync.WaitGroup
	for u := 0; u < units; u++ {
		wg.Add(1)
		go func(log *unitLog) {
			defer wg.Done()
			for atomic.LoadInt32(&stop) == 0 {
				phase0 := atomic.LoadInt32(&phase)
				t0 := time.Now()
				time.Sleep(tick)
				now, ph := time.Now(), atomic.LoadInt32(&phase)
				if phase0 == 0 && ph == 0 {
					log.home = syscall.Gettid()
				}
				if phase0 == 1 || (phase0 == 0 && ph >= 1) {
					late := now.Sub(t0.Add(tick))
					if late < 0 {
						late = 0
					}
					log.lateUs = append(log.lateUs, float64(late.Microseconds()))
				}
				if ph == 1 && phase0 >= 1 {
					log.wakes++
				}
			}
		}(&logs[u])
	}
	time.Sleep(warmUp)
	blockerThread := make(chan int)
	go func() {
		blockerThread <- syscall.Gettid()
		atomic.StoreInt32(&phase, 1)
		if spin {
			for t := time.Now(); time.Since(t) < blockFor; {
			}
		} else {
			ts := syscall.NsecToTimespec(blockFor.Nanoseconds())
			for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
			}
		}
		atomic.StoreInt32(&phase, 2)
		close(blockerThread)
	}()
	blocker := <-blockerThread
	<-blockerThread
	time.Sleep(warmUp)
	atomic.StoreInt32(&stop, 1)
	wg.Wait()

	f := figures{}
	for _, group := range []struct {
		name string
		same bool
	}{{"same", true}, {"other", false}} {
		var late []float64
		wakes, count := 0, 0
		for i := range logs {
			if (logs[i].home == blocker) != group.same {
				continue
			}
			late = append(late, logs[i].lateUs...)
			wakes += logs[i].wakes
			count++
		}
		f[group.name+"_units"] = float64(count)
		if count == 0 || len(late) == 0 {
			continue
		}
		sort.Float64s(late)
		pct := func(p float64) float64 { return late[int(math.Round(float64(len(late)-1)*p))] }
		f[group.name+"_p50_us"] = pct(0.5)
		f[group.name+"_p99_us"] = pct(0.99)
		f[group.name+"_max_ms"] = pct(1) / 1e3
		f[group.name+"_wakes"] = float64(wakes) / float64(count)
	}
	return f, nil
}

// io: a net/http hello server on 127.0.0.1, port chosen by the kernel. It announces
// {"listening":"<addr>"} on stdout and serves until the lab kills it (the lab drives the
// load and reads this process's RSS itself). Go raises RLIMIT_NOFILE to its hard limit at
// start-up (since Go 1.19).
func serveHTTP() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("cannot bind 127.0.0.1:0: %v", err)
	}
	line, err := json.Marshal(map[string]string{"listening": ln.Addr().String()})
	if err != nil {
		return err
	}
	fmt.Println(string(line))
	hello := []byte("Hello, World!")
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(hello)
	})
	return fmt.Errorf("the server stopped: %v", http.Serve(ln, handler))
}

// client: n goroutines share the GETs named in FIBRA_LAB_CLIENT_REQUESTS against the server
// in FIBRA_LAB_CLIENT_ADDR (src/experiments/client.rs), each GET's body read whole, through
// one http.Client whose Transport keeps up to n idle connections (the default keeps 2 per
// host, which would make most GETs open a connection).
func httpClient(n uint64, clientCase string) (figures, error) {
	if clientCase != "" {
		return nil, fmt.Errorf("the Go peer has no client case %q", clientCase)
	}
	addr := os.Getenv("FIBRA_LAB_CLIENT_ADDR")
	requests, err := strconv.ParseUint(os.Getenv("FIBRA_LAB_CLIENT_REQUESTS"), 10, 64)
	if addr == "" || err != nil {
		return nil, fmt.Errorf("FIBRA_LAB_CLIENT_ADDR and FIBRA_LAB_CLIENT_REQUESTS must be set")
	}
	if n == 0 {
		n = 1
	}
	url := "http://" + addr + "/"
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: int(n), MaxIdleConnsPerHost: int(n)}}
	latencies := make([][]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := uint64(0); i < n; i++ {
		share := requests / n
		if i < requests%n {
			share++
		}
		wg.Add(1)
		go func(i, share uint64) {
			defer wg.Done()
			lat := make([]time.Duration, 0, share)
			for j := uint64(0); j < share; j++ {
				t := time.Now()
				resp, err := client.Get(url)
				if err != nil {
					errs[i] = err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(body) != "Hello, World!" {
					errs[i] = fmt.Errorf("GET %s: status %d, body %q, %v", url, resp.StatusCode, body, err)
					return
				}
				lat = append(lat, time.Since(t))
			}
			latencies[i] = lat
		}(i, share)
	}
	wg.Wait()
	wall := time.Since(start)
	all := make([]time.Duration, 0, requests)
	for i, lat := range latencies {
		if errs[i] != nil {
			return nil, errs[i]
		}
		all = append(all, lat...)
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	p99 := 0.0
	if len(all) > 0 {
		p99 = ms(all[len(all)*99/100])
	}
	return figures{
		"req_per_s": float64(len(all)) / wall.Seconds(),
		"p99_ms":    p99,
	}, nil
}

// fs: units read a file at 4 KiB random offsets (or 1 MiB front to back) with os.File.ReadAt
// (src/experiments/fs.rs). The lab prepares the page cache and names the file in
// FIBRA_LAB_FS_FILE; n carries the time cap (ms) in its high bits and the reads in its low 40.
func fsReads(n uint64, fsCase string) (figures, error) {
	const block, seqBlock = 4096, 1 << 20
	var cold, seq string
	var conc uint64
	parts := strings.Split(fsCase, "-")
	if len(parts) != 3 || !strings.HasPrefix(parts[2], "c") {
		return nil, fmt.Errorf("unknown fs case %q", fsCase)
	}
	cold, seq = parts[0], parts[1]
	conc, err := strconv.ParseUint(parts[2][1:], 10, 64)
	if err != nil || conc == 0 || (cold != "warm" && cold != "cold") || (seq != "rand" && seq != "seq") {
		return nil, fmt.Errorf("unknown fs case %q", fsCase)
	}
	sequential := seq == "seq"
	reads, capDur := n&(1<<40-1), time.Duration(n>>40)*time.Millisecond
	path := os.Getenv("FIBRA_LAB_FS_FILE")
	if path == "" {
		return nil, fmt.Errorf("fs: FIBRA_LAB_FS_FILE is not set (the lab sets it)")
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	info, err := file.Stat()
	if err != nil {
		return nil, err
	}
	fileLen := uint64(info.Size())
	size := block
	if sequential {
		size = seqBlock
	}
	offset := func(unit, i uint64) uint64 {
		if sequential {
			return (i % (fileLen / seqBlock)) * seqBlock
		}
		x := (unit+1)*0x9E3779B97F4A7C15 ^ i*0xD1B54A32D192ED03
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return (x % (fileLen / block)) * block
	}
	lats := make([][]uint32, conc)
	starts, ends := make([]time.Time, conc), make([]time.Time, conc)
	errs := make([]error, conc)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for u := uint64(0); u < conc; u++ {
		wg.Add(1)
		go func(unit uint64) {
			defer wg.Done()
			<-start
			starts[unit] = time.Now()
			ends[unit] = starts[unit]
			until := starts[unit].Add(capDur)
			mine := reads / conc
			if unit == 0 {
				mine += reads % conc
			}
			buf := make([]byte, size)
			lat := make([]uint32, 0, mine)
			for i := uint64(0); i < mine; i++ {
				off := offset(unit, i)
				t := time.Now()
				if _, err := file.ReadAt(buf, int64(off)); err != nil {
					errs[unit] = fmt.Errorf("fs: read at %d: %v", off, err)
					return
				}
				now := time.Now()
				d := now.Sub(t).Nanoseconds()
				if d > math.MaxUint32 {
					d = math.MaxUint32
				}
				lat = append(lat, uint32(d))
				ends[unit] = now
				if !now.Before(until) {
					break
				}
			}
			lats[unit] = lat
		}(u)
	}
	close(start)
	wg.Wait()
	// The run's time: the first unit's start to the last one's end (as the Rust peers).
	first, last := starts[0], ends[0]
	var all []uint32
	for u := range lats {
		if errs[u] != nil {
			return nil, errs[u]
		}
		all = append(all, lats[u]...)
		if starts[u].Before(first) {
			first = starts[u]
		}
		if ends[u].After(last) {
			last = ends[u]
		}
	}
	elapsed := last.Sub(first).Seconds()
	if len(all) == 0 {
		return nil, fmt.Errorf("fs: no read completed")
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	p99 := all[int(math.Round(float64(len(all)-1)*0.99))]
	ops := float64(len(all))
	return figures{
		"kops":       ops / elapsed / 1e3,
		"us_per_op":  elapsed * 1e6 / ops,
		"p99_us":     float64(p99) / 1e3,
		"reads":      ops,
		"elapsed_ms": elapsed * 1e3,
	}, nil
}
