/*
 * test_lb_failover - unit tests of the example policy, written as a user
 * writes them out of tree: only installed files (lars/policy_test.h and
 * liblars-policy-test), no test framework, time chosen by the test.
 *
 *     cc test_lb_failover.c lb_failover.c -o test_lb_failover \
 *        $(pkg-config --cflags --libs lars-policy-test) && ./test_lb_failover
 *
 * Exits 0 when every check holds; else prints the first one that failed
 * and exits 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lars/policy_test.h>

/* The policy under test: lb_failover.c's descriptor. */
extern const struct lars_plugin lars_plugin;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* A module of three nodes with the given settings. */
static struct lars_policy_test *three_nodes(const char *settings)
{
    char err[256];
    struct lars_policy_test *t =
        lars_policy_test_new(&lars_plugin, settings, NULL, err, sizeof(err));
    if (!t) {
        fprintf(stderr, "refused: %s\n", err);
        exit(1);
    }
    CHECK(lars_policy_test_add(t, "10.0.0.1:80", 0, NULL) == 0);
    CHECK(lars_policy_test_add(t, "10.0.0.2:80", 0, NULL) == 1);
    CHECK(lars_policy_test_add(t, "[2001:db8::3]:80", 0, NULL) == 2);
    return t;
}

/* Settings are checked as the agent checks them. */
static void test_settings(void)
{
    char err[256];
    CHECK(lars_policy_test_check(&lars_plugin, "", err, sizeof(err)) == 0);
    CHECK(lars_policy_test_check(&lars_plugin, "fail_limit = 5; retry_after = 30;", err,
                                 sizeof(err)) == 0);
    CHECK(lars_policy_test_check(&lars_plugin, "fail_limit = 0;", err, sizeof(err)) < 0);
    CHECK(strstr(err, "fail_limit") != NULL);
    CHECK(lars_policy_test_check(&lars_plugin, "\nfail_limti = 3;", err, sizeof(err)) < 0);
    CHECK(strstr(err, "line 2") != NULL && strstr(err, "fail_limti") != NULL);
}

/* The first node gets every request; fail_limit failures in a row move
 * them to the next; after retry_after the first is tried again. */
static void test_failover_and_back(void)
{
    struct lars_policy_test *t = three_nodes("fail_limit = 2; retry_after = 5;");
    for (int i = 0; i < 10; i++) {
        CHECK(lars_policy_test_pick(t, 0) == 0);
    }
    lars_policy_test_report(t, 0, false, 0);
    CHECK(lars_policy_test_pick(t, 0) == 0); /* one failure: still first */
    lars_policy_test_report(t, 0, false, 0);
    CHECK(lars_policy_test_node(t, 0)->overloaded);
    CHECK(lars_policy_test_pick(t, 0) == 1);

    lars_policy_test_set_time(t, lars_policy_test_time(t) + 4999);
    CHECK(lars_policy_test_pick(t, 0) == 1);
    lars_policy_test_set_time(t, lars_policy_test_time(t) + 1);
    CHECK(lars_policy_test_pick(t, 0) == 0); /* retry_after passed */
    CHECK(!lars_policy_test_node(t, 0)->overloaded);
    lars_policy_test_free(t);
}

/* A success resets the count: failures must be in a row. */
static void test_success_resets(void)
{
    struct lars_policy_test *t = three_nodes("fail_limit = 2;");
    lars_policy_test_report(t, 0, false, 0);
    lars_policy_test_report(t, 0, true, 1500);
    lars_policy_test_report(t, 0, false, 0);
    CHECK(lars_policy_test_pick(t, 0) == 0);
    CHECK(lars_policy_test_node(t, 0)->real_err == 2); /* counted by the "agent" */
    lars_policy_test_free(t);
}

/* Every node out: no node to give; a removed node is never picked. */
static void test_all_out_and_removed(void)
{
    struct lars_policy_test *t = three_nodes("fail_limit = 1;");
    lars_policy_test_remove(t, 0);
    CHECK(lars_policy_test_node(t, 0) == NULL);
    CHECK(lars_policy_test_pick(t, 0) == 1);
    lars_policy_test_report(t, 1, false, 0);
    lars_policy_test_report(t, 2, false, 0);
    CHECK(lars_policy_test_pick(t, 0) == LARS_POLICY_TEST_NONE);
    CHECK(strcmp(lars_policy_test_error(t), "") == 0);
    lars_policy_test_free(t);
}

int main(void)
{
    test_settings();
    test_failover_and_back();
    test_success_resets();
    test_all_out_and_removed();
    printf("test_lb_failover: all checks passed\n");
    return 0;
}
