/*
 * stats.h - `lars stats [IP:PORT]`: the agent's stats endpoint as tables.
 */
#ifndef LARS_CLI_STATS_H
#define LARS_CLI_STATS_H

/* Prints /metrics as a summary and /routes as a table. Returns the exit
 * status: 0, 1 (unreachable or bad answer) or 2 (bad address). */
int lars_cli_stats(const char *address, unsigned timeout_ms);

#endif /* LARS_CLI_STATS_H */
