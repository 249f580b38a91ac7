/*
 * hops - what this machine charges for the steps a relay adds: a system
 * call, and a hand-off from one blocked thread or process to another,
 * on the same CPU and across two CPUs.
 *
 * A hand-off is half a round trip of a one-byte ping-pong over two
 * pipes: one side writes and blocks in read, the other wakes, reads and
 * does the same.  So each hand-off includes one write and one read.
 * Each figure is the median of --batches batches of --rounds round
 * trips, the peers pinned with sched_setaffinity to the first one or
 * two CPUs this process may use.  A relay such as lonc puts three more
 * hand-offs on a request's path than a client talking to lond directly
 * (doc/performance.md, "What a hand-off costs here").
 *
 * Usage: hops [--batches N] [--rounds N].  Prints one line:
 *   syscall_us=X thread_same_cpu_us=X process_same_cpu_us=X
 *   thread_cross_cpu_us=X process_cross_cpu_us=X
 * with "na" for the cross-CPU figures when only one CPU is allowed.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HOPS_MAX_BATCHES 101

struct pingpong {
	int to_peer[2];     /* pipe: the timing side writes, the peer reads */
	int from_peer[2];   /* pipe: the peer writes back */
	int peer_cpu;
};

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void die(const char *what)
{
	fprintf(stderr, "hops: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		die("sched_setaffinity");
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The answering side: echo every byte back until end of file. */
static void *peer_main(void *arg)
{
	struct pingpong *pp = arg;
	char ch;

	pin(pp->peer_cpu);
	while (read(pp->to_peer[0], &ch, 1) == 1)
		if (write(pp->from_peer[1], &ch, 1) != 1)
			break;
	return NULL;
}

static double syscall_us(int batches, long rounds)
{
	double v[HOPS_MAX_BATCHES];

	for (int b = 0; b < batches; b++) {
		double t0 = now_us();

		for (long i = 0; i < rounds; i++)
			syscall(SYS_getppid);
		v[b] = (now_us() - t0) / (double)rounds;
	}
	return median(v, batches);
}

/* Microseconds per hand-off between this thread (on cpu) and a peer
 * thread or process (on peer_cpu). */
static double handoff_us(int cpu, int peer_cpu, int use_process, int batches, long rounds)
{
	struct pingpong pp = { .peer_cpu = peer_cpu };
	pthread_t thread;
	pid_t child = -1;
	double v[HOPS_MAX_BATCHES];
	char ch = 'x';

	if (pipe(pp.to_peer) < 0 || pipe(pp.from_peer) < 0)
		die("pipe");
	pin(cpu);
	if (use_process) {
		child = fork();
		if (child < 0)
			die("fork");
		if (child == 0) {
			close(pp.to_peer[1]);
			close(pp.from_peer[0]);
			peer_main(&pp);
			_exit(0);
		}
		close(pp.to_peer[0]);
		close(pp.from_peer[1]);
	} else {
		int err = pthread_create(&thread, NULL, peer_main, &pp);

		if (err) {
			errno = err;
			die("pthread_create");
		}
	}
	for (int b = 0; b < batches; b++) {
		double t0 = now_us();

		for (long i = 0; i < rounds; i++)
			if (write(pp.to_peer[1], &ch, 1) != 1 ||
			    read(pp.from_peer[0], &ch, 1) != 1)
				die("ping-pong");
		v[b] = (now_us() - t0) / (double)rounds / 2;
	}
	close(pp.to_peer[1]);   /* the peer reads end of file and stops */
	if (use_process) {
		waitpid(child, NULL, 0);
		close(pp.from_peer[0]);
	} else {
		pthread_join(thread, NULL);
		close(pp.to_peer[0]);
		close(pp.from_peer[0]);
		close(pp.from_peer[1]);
	}
	return median(v, batches);
}

static void usage(int rc)
{
	fprintf(rc ? stderr : stdout, "usage: hops [--batches N (1-%d)] [--rounds N]\n",
		HOPS_MAX_BATCHES);
	exit(rc);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "batches", required_argument, NULL, 'b' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int batches = 7, opt;
	long rounds = 2000;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'b': batches = atoi(optarg); break;
		case 'r': rounds = atol(optarg); break;
		case 'h': usage(0); break;
		default: usage(2);
		}
	}
	if (optind != argc || batches < 1 || batches > HOPS_MAX_BATCHES || rounds < 1)
		usage(2);

	cpu_set_t allowed;
	int cpus[2], ncpus = 0;

	if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
		die("sched_getaffinity");
	for (int i = 0; i < CPU_SETSIZE && ncpus < 2; i++)
		if (CPU_ISSET(i, &allowed))
			cpus[ncpus++] = i;
	if (ncpus == 0) {
		fprintf(stderr, "hops: no CPU allowed\n");
		return 1;
	}

	/* Everything is measured before anything is printed: a child forked
	 * while stdout still held output could write it a second time. */
	double sc = syscall_us(batches, rounds * 10);
	double t1 = handoff_us(cpus[0], cpus[0], 0, batches, rounds);
	double p1 = handoff_us(cpus[0], cpus[0], 1, batches, rounds);
	double t2 = -1, p2 = -1;

	if (ncpus == 2) {
		t2 = handoff_us(cpus[0], cpus[1], 0, batches, rounds);
		p2 = handoff_us(cpus[0], cpus[1], 1, batches, rounds);
	}
	printf("syscall_us=%.2f thread_same_cpu_us=%.2f process_same_cpu_us=%.2f", sc, t1, p1);
	if (ncpus == 2)
		printf(" thread_cross_cpu_us=%.2f process_cross_cpu_us=%.2f\n", t2, p2);
	else
		printf(" thread_cross_cpu_us=na process_cross_cpu_us=na\n");
	return 0;
}
