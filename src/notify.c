/*
 * notify.c - systemd's notification protocol through libsystemd
 * (notify.h): state changes, and a watchdog thread that pings only
 * while lonc makes progress.  Main thread, and the watchdog thread
 * (`lonc-watchdog`); one mutex/condvar pair for the thread's stop.
 * May call: log, util.
 */
#include "notify.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"

static pthread_t thread;
static bool running;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;           /* "stop" */
static bool stop;                   /* protected by mu */
static long half_ms;                /* the ping period, set before the thread */
static bool (*alive_fn)(void *);
static void *alive_arg;

void notify(const char *state)
{
	/* sd_notify does nothing (returns 0) without NOTIFY_SOCKET. */
	if (sd_notify(0, state) < 0)
		log_msg(LOG_WARNING, "event=notify_failed state=\"%s\"", state);
}

long notify_watchdog_ms(void)
{
	return half_ms;
}

static void *watchdog_main(void *arg)
{
	(void)arg;
	thread_name("watchdog", NULL);
	pthread_mutex_lock(&mu);
	while (!stop) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += half_ms / 1000;
		ts.tv_nsec += (half_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&cv, &mu, &ts);
		if (stop)
			break;
		pthread_mutex_unlock(&mu);
		if (alive_fn(alive_arg))
			notify("WATCHDOG=1");
		else
			log_msg(LOG_ERR, "event=watchdog_withheld reason=\"lonc makes no progress: its signal loop or an acceptor is stuck\"");
		pthread_mutex_lock(&mu);
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

int notify_watchdog_start(bool (*alive)(void *arg), void *arg)
{
	uint64_t usec = 0;
	pthread_condattr_t ca;

	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		return 0;
	half_ms = (long)(usec / 2000);
	if (half_ms < 10)
		half_ms = 10;
	alive_fn = alive;
	alive_arg = arg;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&cv, &ca);
	pthread_condattr_destroy(&ca);
	int rc = pthread_create(&thread, NULL, watchdog_main, NULL);
	if (rc) {
		log_msg(LOG_ERR, "event=thread_failed thread=watchdog error=\"%s\"", strerror(rc));
		return -1;
	}
	running = true;
	log_msg(LOG_INFO, "event=watchdog period_ms=%ld", half_ms * 2);
	return 0;
}

void notify_watchdog_stop(void)
{
	if (!running)
		return;
	pthread_mutex_lock(&mu);
	stop = true;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
	pthread_join(thread, NULL);
	running = false;
	pthread_cond_destroy(&cv);
}
