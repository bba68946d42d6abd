/*
 * stub_policy.h - the pick() and report() of a test policy that only cares
 * about how the core adds and removes nodes (route merge, reload, loader
 * tests): pick answers OVERLOAD, report ignores the call.
 */
#ifndef LARS_TEST_STUB_POLICY_H
#define LARS_TEST_STUB_POLICY_H

#include <lars/plugin.h>

static inline enum lars_retcode stub_pick(void *instance, uint64_t key, uint64_t now_ms,
                                          struct lars_node **out)
{
    (void)instance;
    (void)key;
    (void)now_ms;
    *out = NULL;
    return LARS_RET_OVERLOAD;
}

static inline void stub_report(void *instance, struct lars_node *node, int retcode,
                               uint32_t cost_us, uint64_t now_ms)
{
    (void)instance;
    (void)node;
    (void)retcode;
    (void)cost_us;
    (void)now_ms;
}

#endif /* LARS_TEST_STUB_POLICY_H */
