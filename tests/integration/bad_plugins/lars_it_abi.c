/*
 * lars_it_abi - a policy plugin built for another plugin ABI major (one above
 * this tree's). The agent must refuse it, naming both ABI versions, before it
 * reads anything else of the descriptor.
 */
#include <lars/plugin.h>

LARS_PLUGIN_EXPORT extern const struct lars_plugin lars_plugin;

LARS_PLUGIN_EXPORT const struct lars_plugin lars_plugin = {
    .abi_major = LARS_PLUGIN_ABI_MAJOR + 1,
    .abi_minor = 7,
    .size = sizeof(struct lars_plugin),
    .kind = LARS_PLUGIN_POLICY,
    .name = "lars_it_abi",
    .version = "9.9",
    .description = "test: a policy from a future plugin ABI",
};
