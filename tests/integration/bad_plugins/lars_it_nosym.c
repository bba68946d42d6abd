/*
 * lars_it_nosym - a shared object that is not a Lars plugin: it exports a
 * symbol, but not the descriptor. The agent must refuse it by name.
 */
int lars_it_not_a_plugin(void);
int lars_it_not_a_plugin(void)
{
    return 42;
}
