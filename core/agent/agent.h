/*
 * agent.h - a running lars-agent: the workers, the serving generation
 * (generation.h: config, plugins, dns and reporter threads) and the main
 * thread's loop (signals, reload, the stats endpoint).
 *
 * Main thread only.
 */
#ifndef LARS_AGENT_H
#define LARS_AGENT_H

#include <stddef.h>

#include "config.h"

struct lars_agent;

/* Builds and starts everything from config (the agent takes ownership of
 * it, also on failure). NULL with a message in err on failure. */
struct lars_agent *lars_agent_start(struct lars_config *config, char *err, size_t err_len);

/* Runs the main loop until SIGTERM or SIGINT. Returns 0. */
int lars_agent_run(struct lars_agent *agent);

/* Stops the threads in order (workers, which flush statistics; dns;
 * reporter), logs the final counters and frees everything. NULL-safe. */
void lars_agent_destroy(struct lars_agent *agent);

#endif /* LARS_AGENT_H */
