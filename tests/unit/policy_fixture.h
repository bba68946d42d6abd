/*
 * policy_fixture.h - a fake core for the policy plugin unit tests
 * (test_lb_lars, test_lb_wrr, test_lb_p2c).
 *
 * The fixture plays the core: it owns the struct lars_node array and the
 * per-node blocks (node_data_size), increments
 * real_succ / real_err before report(), and builds every conf from a config
 * string through lars_settings_apply + validate(), as the agent does.
 *
 * It drives `lars_plugin`, the descriptor of the one policy plugin the test
 * executable links (its NAME_impl library): one plugin per test binary.
 *
 * Every helper fails the running cmocka test on a broken expectation; none is
 * thread-safe (cmocka runs the tests one after the other).
 */
#ifndef LARS_TESTS_POLICY_FIXTURE_H
#define LARS_TESTS_POLICY_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lars/plugin.h>
#include <libconfig.h>

extern const struct lars_plugin lars_plugin;

#define FX_MAX_NODES 16
#define NONE (-1) /* fx_pick(): pick() answered RET_OVERLOAD */

struct fx {
    config_t cfg; /* kept alive: LIST settings in conf point into it */
    void *conf;
    void *inst; /* NULL once a test destroyed it itself */
    int nnodes; /* node[0, nnodes) are the test's nodes */
    struct lars_node node[FX_MAX_NODES];
    uint64_t now;
    uint64_t rng;             /* the test's own randomness, if it wants any */
    struct lars_services svc; /* the core's, with zone = fx_zone() */
    uint64_t panics;          /* svc.policy_count(LARS_POLICY_PANIC) so far */
};

/* The agent's zone (svc->zone) of the modules fx_create makes from now on;
 * "" (the default) = none. */
void fx_set_zone(const char *zone);

/*
 * Fills a conf block from cfg's group `policy` the way the core does: table
 * defaults, the section's values, validate(). Returns 0 with *out set (free
 * it), or the error with the message in err and *out untouched.
 */
int fx_conf_from_config(config_t *cfg, void **out, char *err, size_t len);

/* fx_conf_from_config on a string; cfg keeps the tree alive (LIST settings
 * point into it): the caller destroys it, whatever the result. */
int fx_conf_from_string_keep(const char *text, config_t *cfg, void **out, char *err, size_t len);

/* fx_conf_from_config on text written to a temporary file (so messages
 * carry the core's "file:line: " prefix; path receives the file's name),
 * removed afterwards. */
int fx_conf_from_file(const char *text, char path[32], void **out, char *err, size_t len);

/* fx_conf_from_config on a string, for confs without LIST settings read. */
int fx_conf_from_string(const char *text, void **out, char *err, size_t len);

/* Asserts that text is refused with -EINVAL and a message holding word and,
 * unless NULL, line. */
void fx_expect_refused(const char *text, const char *line, const char *word);

/* The policy ops of the plugin under test. */
const struct lars_policy_ops *fx_ops(void);

/* The conf of a section setting nothing but the core's keys (plugin,
 * update_timeout): the table's defaults. Fails the test if it is refused;
 * free it. */
void *fx_conf_defaults(void);

/* Asserts that the settings table has n entries, each with a description. */
void fx_check_settings_described(size_t n);

/* The settings table's entry for name, or NULL. */
const struct lars_setting *fx_find_setting(const char *name);

/* The INT setting name as filled into conf; fails the test if it is missing
 * or not an INT. */
int64_t fx_conf_int(void *conf, const char *name);

/* The defaults of the rows plugins/common gives lb_wrr, lb_p2c and lb_ring
 * (fail_limit 5, timeout_key 10 s, probe_num 10, window 15 s, zone_aware
 * off, panic_threshold 0.5). */
void fx_check_set_defaults(void *conf, const char *timeout_key);

/* The descriptor checks every policy plugin must pass: ABI, size, kind,
 * name, policy ops only, tick present, node_data_size set. */
void fx_check_descriptor(const char *name);

/*
 * A module with the policy section
 *   policy = { plugin = "<lars_plugin.name>"; <head><body> };
 * created with module id (modid, cmdid). Node i is 10.0.0.(i+1):(port0+i),
 * for i < nnodes (at most FX_MAX_NODES). Fails the test if the conf is
 * refused. Free with fx_free (or fx_teardown).
 */
struct fx *fx_create(const char *head, const char *body, int nnodes, uint16_t port0, int32_t modid,
                     int32_t cmdid);

/* destroy() (unless inst is NULL), then the conf, the config tree and fx. */
void fx_free(struct fx *fx);

/* cmocka setup for tests that build their own fixture: *state = NULL. */
int fx_setup_none(void **state);

/* cmocka teardown: removes what is left, as the core does before destroy(),
 * then fx_free. A NULL *state is fine. */
int fx_teardown(void **state);

/* node_added / node_removed of node i as the core does them (ABI 1.2): a
 * zeroed block of node_data_size in policy_data before node_added, freed
 * after node_removed; asserts the policy leaves the pointer alone. fx_add
 * says LARS_NODE_FROM_ROUTE, fx_add_from the origin given. */
void fx_add_from(struct fx *fx, int i, enum lars_node_origin origin);
void fx_add(struct fx *fx, int i);
void fx_add_n(struct fx *fx, int n); /* nodes 0 .. n-1 */
void fx_del(struct fx *fx, int i);

/* One call result of node i at fx->now, counted first by the "core"; a
 * node not added (or removed) is not in the module: nothing happens. */
void fx_rep_cost(struct fx *fx, int i, bool ok, uint32_t cost_us);
void fx_rep(struct fx *fx, int i, bool ok); /* cost 0: not measured */
void fx_rep_n(struct fx *fx, int i, bool ok, int n);

/* Asserts that n - 1 more failures of node i leave it in (not overloaded)
 * and the n-th takes it out. */
void fx_expect_out_after(struct fx *fx, int i, int n);

/* pick() at fx->now: the node's index, or NONE for RET_OVERLOAD. */
int fx_pick(struct fx *fx);
/* The same with the request's hash key. */
int fx_pick_key(struct fx *fx, uint64_t key);

/* node_updated of node i after the test changed its weight, zone or
 * draining (as the core does on a route update). */
void fx_update(struct fx *fx, int i);

/* Asserts that the next n picks answer RET_OVERLOAD. */
void fx_expect_none(struct fx *fx, int n);

/* Asserts the next picks, given as indexes (NONE for RET_OVERLOAD). */
void fx_expect_picks(struct fx *fx, const int *want, size_t n);

/* Counts n picks per node into count[fx->nnodes]; returns RET_OVERLOADs. */
int fx_count_picks(struct fx *fx, int n, int *count);

/* tick() at now, which becomes fx->now. */
void fx_tick(struct fx *fx, uint64_t now);

/*
 * Checks every policy shares, on a module of at least two nodes, none added:
 * an empty module answers RET_OVERLOAD, a single node added (node 0) is
 * picked, and once removed the module is empty again.
 */
void fx_check_empty_module(struct fx *fx);

/*
 * Checks the handover of a reload (plugin.h, node_added) for a policy that
 * keeps the real counters: node 0, overloaded with counters set, and node 1
 * are handed over; node 0 keeps its counters and stays out (only node 1 is
 * picked), node 1 is not overloaded.
 */
void fx_check_handover_keeps_out(struct fx *fx);

/*
 * Draining (plugin.h, lars_node.draining), for every policy: nodes 0..3,
 * node 1 draining (node_updated) gets no pick of 400 while the others do;
 * back to normal it is picked again; with every node draining they are
 * served as usual. fx is a fresh module of at least four nodes, none added.
 */
void fx_check_draining(struct fx *fx);

/* Asserts that n picks answer no RET_OVERLOAD and give node i want[i]
 * picks, for every i < k. */
void fx_expect_counts(struct fx *fx, int n, const int *want, int k);

/* cmocka tests of the checks below on a fresh module of FX_MAX_NODES nodes
 * (setup fx_setup_none, teardown fx_teardown): fx_check_draining, and
 * fx_check_zone_rule over 100000 picks +-0.01 with zone_aware = true. */
void fx_test_draining(void **state);
void fx_test_zone_rule(void **state);

/*
 * The zone rule of plugins/common (docs/policies.md) for a policy created
 * with zone_aware = true in local zone "a" (fx_set_zone): nodes 0-2 in "a",
 * 3-5 in "b", 6-8 in "c", equal weights. All healthy: every pick local.
 * Nodes 0 and 1 draining: the local zone holds 1/7 of the healthy capacity
 * for a share of 1/3, so 3/7 of the picks stay local and "b" and "c" get
 * 2/7 each (residual 2/21 each), +-tol over n picks. fx is a fresh module
 * of at least nine nodes, none added. Returns the local fraction seen.
 */
double fx_check_zone_rule(struct fx *fx, int n, double tol);

/* The DOUBLE setting name as filled into conf. */
double fx_conf_double(void *conf, const char *name);

/*
 * Panic mode (panic_threshold = 0.5), for every policy: nodes 0..3; 20
 * failures each take nodes 0 and 1 out: 2 of 4 healthy is not too few, so
 * no pick is counted as panic and nodes 0 and 1 get at most the probes.
 * Node 2 out too: 1 of 4 healthy, every one of 400 picks is served (no
 * RET_OVERLOAD), every node gets some, each counted (svc.policy_count).
 * 20 successes of node 0 bring it back: no panic any more. fx is a fresh
 * module of at least four nodes, none added.
 */
void fx_check_panic(struct fx *fx);

/* cmocka test of fx_check_panic (setup fx_setup_none, teardown
 * fx_teardown). */
void fx_test_panic(void **state);

/*
 * Active health checks (plugin.h, node_probed), for every policy: nodes
 * 0..3, node 0 taken out by 20 failures; a failed probe leaves it out (no
 * pick of 100), a healthy one brings it back at once (picked again, not
 * overloaded). cmocka test on a fresh module (fx_setup_none, fx_teardown).
 */
void fx_test_probed(void **state);

#endif
