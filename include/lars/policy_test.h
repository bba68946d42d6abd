/*
 * lars/policy_test.h - unit tests of a policy plugin, out of tree.
 *
 * A small fake agent for one module: it fills the policy's conf from the
 * text of its section with the agent's own settings engine (defaults,
 * types, ranges, unknown keys refused, then validate()), hands create() the
 * agent's services table, owns the nodes as the agent does (a zeroed block
 * of node_data_size per node, real_succ / real_err counted before
 * report()), checks every pick() as the agent does, and lets the test
 * choose the time every op sees. Nothing here sleeps or touches the
 * network.
 *
 *   cc test_my_policy.c my_policy.c -o test_my_policy \
 *      $(pkg-config --cflags --libs lars-policy-test)
 *
 * (installed with Lars; docs/writing-a-policy.md, "Test it"). A test links
 * the policy's source: the descriptor is its `lars_plugin`.
 *
 * Threads: one test object per thread; nothing is shared between objects.
 */
#ifndef LARS_POLICY_TEST_H
#define LARS_POLICY_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lars/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One module served by one instance of the policy under test. */
struct lars_policy_test;

/* pick() answered LARS_RET_OVERLOAD (lars_policy_test_pick). */
#define LARS_POLICY_TEST_NONE (-1)
/* pick() answered something the agent refuses (a node not in the module,
 * LARS_RET_SUCC without a node, another retcode): the agent would answer
 * RET_SYSTEM_ERROR; the reason is in lars_policy_test_error(). */
#define LARS_POLICY_TEST_BAD_PICK (-2)

/*
 * Checks settings, the body of the policy's section as agent.conf writes it
 * ("probe_num = 5; err_rate = 0.2;", "" = every default), as the agent
 * does at load and with `lars-agent -t`. Returns 0, or a negative errno
 * with one line in err ("line N: ..." names the line within settings).
 */
int lars_policy_test_check(const struct lars_plugin *plugin, const char *settings, char *err,
                           size_t err_len);

/*
 * A module (modid 1, cmdid 1, no nodes) of the plugin's policy: its conf
 * filled from settings as lars_policy_test_check does, then create() with
 * the agent's services table; zone is the agent's zone (svc->zone; NULL or
 * "" = none). Time starts at now_ms 1000. NULL with one line in err when
 * the settings are refused or create() fails.
 */
struct lars_policy_test *lars_policy_test_new(const struct lars_plugin *plugin,
                                              const char *settings, const char *zone, char *err,
                                              size_t err_len);

/* Removes the nodes left (node_removed), destroy(), frees. NULL-safe. */
void lars_policy_test_free(struct lars_policy_test *t);

/*
 * Adds a node the way a route does: addr "ip:port" or "[v6]:port", weight
 * (0 = the route says nothing: 100), zone (NULL = ""), node_added() with
 * origin LARS_NODE_FROM_ROUTE. Returns the node's index (0, 1, ... in the
 * order added; at most 1024 nodes), or a negative errno: -EINVAL for a bad
 * address, node_added()'s refusal (then the node is not in the module).
 */
int lars_policy_test_add(struct lars_policy_test *t, const char *addr, uint32_t weight,
                         const char *zone);

/* The node at index i (NULL when there is none or it was removed): read
 * overloaded, real_succ, ...; change weight, zone or draining, then call
 * lars_policy_test_update(). */
struct lars_node *lars_policy_test_node(struct lars_policy_test *t, int i);

/* node_updated() of node i after the test changed what the route says. */
void lars_policy_test_update(struct lars_policy_test *t, int i);

/* node_removed() of node i; its index is not reused. */
void lars_policy_test_remove(struct lars_policy_test *t, int i);

/* pick() with the request's hash key (0 = none): the node's index,
 * LARS_POLICY_TEST_NONE or LARS_POLICY_TEST_BAD_PICK. */
int lars_policy_test_pick(struct lars_policy_test *t, uint64_t key);

/* One call result of node i as the agent handles a report: real_succ or
 * real_err counted first, then report() with retcode 0 (ok) or 1 and
 * cost_us (0 = not measured). A removed node is ignored, as the agent
 * does. */
void lars_policy_test_report(struct lars_policy_test *t, int i, bool ok, uint32_t cost_us);

/* The time every op sees from now on, milliseconds (only forward). */
void lars_policy_test_set_time(struct lars_policy_test *t, uint64_t now_ms);
uint64_t lars_policy_test_time(const struct lars_policy_test *t);

/* tick() at the current time, if the policy has one. */
void lars_policy_test_tick(struct lars_policy_test *t);

/* What svc->policy_count added to LARS_POLICY_PANIC so far
 * (lars_panic_total{plugin} in the agent). */
uint64_t lars_policy_test_panics(const struct lars_policy_test *t);

/* Why the last pick was LARS_POLICY_TEST_BAD_PICK ("" when none was). */
const char *lars_policy_test_error(const struct lars_policy_test *t);

#ifdef __cplusplus
}
#endif

#endif /* LARS_POLICY_TEST_H */
