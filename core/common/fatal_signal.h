/*
 * fatal_signal.h - one line on a crash: which signal, in which thread, and
 * whose code held the faulting instruction (the plugin's .so, found with
 * dladdr), written to the log before the default action (a core dump, and
 * the unit's Restart= takes over).
 *
 * A handler installed earlier (a sanitizer's) is called after the line, so
 * its report still comes. Only what a crashing process can still do runs
 * in the handler: no allocation, no locks, no stdio; dladdr and thread
 * names are read best effort.
 */
#ifndef LARS_FATAL_SIGNAL_H
#define LARS_FATAL_SIGNAL_H

/* Main thread, once, before other threads start (they inherit nothing:
 * dispositions are per process). program names the line's writer. */
void lars_fatal_signal_install(const char *program);

#endif /* LARS_FATAL_SIGNAL_H */
