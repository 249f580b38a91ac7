/*
 * proctitle.h - the process title ps and LON-CAPA's loncron show
 * ("lonc: 12 hosts, 34 connections, 1 dead"), written over the memory
 * that held the command line and environment, as Perl's $0 does for
 * loncnew.  Main thread only; no locks.  May call: util.
 */
#ifndef LONC_PROCTITLE_H
#define LONC_PROCTITLE_H

#include "util.h"

/* Take over the command line's memory: the arguments and environment
 * are copied (argv[i] and environ then point at the copies), so call it
 * first in main, before anything keeps a pointer into argv. */
void proctitle_init(int argc, char **argv);

/* Set the title (cut to the space the command line had). */
void proctitle_set(const char *fmt, ...) PRINTF_LIKE(1, 2);

#endif
