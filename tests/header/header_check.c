/*
 * header_check.c - compiles lars/plugin.h the way plugin authors will: as C
 * under clang -Weverything and as C++ (header_check.cpp includes this file)
 * under g++ -Wall -Wextra, both with -Werror, using every macro. Built only,
 * never run (tests/header/CMakeLists.txt).
 */
#include <lars/plugin.h>
#include <lars/policy_test.h> /* out-of-tree policy tests include it too */

#ifdef __cplusplus
#define HC_NULLPTR nullptr
#else
#define HC_NULLPTR NULL
#endif

struct hc_conf {
    int64_t n;
};

static const struct lars_setting hc_settings[] = {
    {"n", LARS_SETTING_INT, "1", offsetof(struct hc_conf, n), 0, 10, "a number"},
    LARS_SETTINGS_END,
};

static int hc_start(const void *conf, const struct lars_dns_host *host, void **instance)
{
    (void)conf;
    if (LARS_HAS_MEMBER(host, count)) {
        host->count(host, LARS_TRANSPORT_SENT, 1);
    }
    if (LARS_HAS_FIELD(host->svc, local_ip) && host->svc->local_ip == 0) {
        return -1;
    }
    *instance = HC_NULLPTR;
    return 0;
}

static void hc_want(void *instance, int32_t modid, int32_t cmdid)
{
    (void)instance;
    (void)modid;
    (void)cmdid;
}

static void hc_stop(void *instance)
{
    (void)instance;
}

static const struct lars_dns_ops hc_ops = {
    sizeof(struct lars_dns_ops), hc_start, hc_want, hc_stop, HC_NULLPTR,
};

/* The core's side of the rule, on a table. */
int lars_header_check_forget(const struct lars_dns_ops *ops);
int lars_header_check_forget(const struct lars_dns_ops *ops)
{
    return LARS_HAS_MEMBER(ops, forget) ? 1 : 0;
}

/* In C++ a const at namespace scope is internal unless extern: a C++
 * plugin writes extern "C" (plugin.h says so). */
#ifdef __cplusplus
extern "C" LARS_PLUGIN_EXPORT const struct lars_plugin lars_plugin;
#else
extern LARS_PLUGIN_EXPORT const struct lars_plugin lars_plugin;
#endif
const struct lars_plugin lars_plugin = {
    LARS_PLUGIN_ABI_MAJOR,
    LARS_PLUGIN_ABI_MINOR,
    sizeof(struct lars_plugin),
    LARS_PLUGIN_DNS,
    "header_check",
    "1",
    "compiles plugin.h",
    hc_settings,
    sizeof(struct hc_conf),
    HC_NULLPTR,
    HC_NULLPTR,
    &hc_ops,
    HC_NULLPTR,
};
