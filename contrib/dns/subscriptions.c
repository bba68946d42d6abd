/*
 * subscriptions.c - subscription tables. Every operation is O(1) expected:
 * a member remembers its position in each module's list, so leaving is a
 * swap-remove, not a scan (the original Lars scans).
 */
#include "subscriptions.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "module_key.h"

static size_t slot_of(const struct lars_u64map *map, uint64_t key)
{
    /* Keys are lars_route_key(): a full mix, so modules differing in modid
     * only do not share a slot (module_key.h). */
    return (size_t)lars_module_key_hash(key) & (map->cap - 1);
}

static void map_free(struct lars_u64map *map)
{
    free(map->keys);
    free(map->values);
    free(map->used);
    memset(map, 0, sizeof(*map));
}

static uintptr_t *map_get(const struct lars_u64map *map, uint64_t key)
{
    if (map->cap == 0) {
        return NULL;
    }
    for (size_t i = slot_of(map, key);; i = (i + 1) & (map->cap - 1)) {
        if (!map->used[i]) {
            return NULL;
        }
        if (map->keys[i] == key) {
            return &map->values[i];
        }
    }
}

static void map_insert_new(struct lars_u64map *map, uint64_t key, uintptr_t value)
{
    size_t i = slot_of(map, key);
    while (map->used[i]) {
        i = (i + 1) & (map->cap - 1);
    }
    map->used[i] = 1;
    map->keys[i] = key;
    map->values[i] = value;
    map->n++;
}

static int map_grow(struct lars_u64map *map)
{
    struct lars_u64map bigger = {0};
    bigger.cap = map->cap ? map->cap * 2 : 8;
    bigger.keys = malloc(bigger.cap * sizeof(*bigger.keys));
    bigger.values = malloc(bigger.cap * sizeof(*bigger.values));
    bigger.used = calloc(bigger.cap, 1);
    if (!bigger.keys || !bigger.values || !bigger.used) {
        map_free(&bigger);
        return -ENOMEM;
    }
    for (size_t i = 0; i < map->cap; i++) {
        if (map->used[i]) {
            map_insert_new(&bigger, map->keys[i], map->values[i]);
        }
    }
    map_free(map);
    *map = bigger;
    return 0;
}

/* Inserts a key known to be absent. */
static int map_put(struct lars_u64map *map, uint64_t key, uintptr_t value)
{
    if ((map->n + 1) * 4 > map->cap * 3 && map_grow(map) < 0) { /* load <= 3/4 */
        return -ENOMEM;
    }
    map_insert_new(map, key, value);
    return 0;
}

static void map_del(struct lars_u64map *map, uint64_t key)
{
    if (map->cap == 0) {
        return;
    }
    size_t mask = map->cap - 1;
    size_t i = slot_of(map, key);
    while (map->used[i] && map->keys[i] != key) {
        i = (i + 1) & mask;
    }
    if (!map->used[i]) {
        return;
    }
    /* Backward-shift deletion keeps probe chains intact without tombstones. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; map->used[j]; j = (j + 1) & mask) {
        size_t home = slot_of(map, map->keys[j]);
        /* j may move into the hole unless its home lies cyclically in (hole, j]. */
        int stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            map->keys[hole] = map->keys[j];
            map->values[hole] = map->values[j];
            hole = j;
        }
    }
    map->used[hole] = 0;
    map->n--;
}

struct member_list {
    struct lars_subs_member **v;
    size_t n;
    size_t cap;
};

struct lars_subs {
    struct lars_u64map modules; /* key -> struct member_list * */
    size_t pairs;
};

struct lars_subs *lars_subs_create(void)
{
    return calloc(1, sizeof(struct lars_subs));
}

void lars_subs_destroy(struct lars_subs *subs)
{
    if (!subs) {
        return;
    }
    for (size_t i = 0; i < subs->modules.cap; i++) {
        if (subs->modules.used[i]) {
            struct member_list *list = (struct member_list *)subs->modules.values[i];
            free(list->v);
            free(list);
        }
    }
    map_free(&subs->modules);
    free(subs);
}

void lars_subs_member_init(struct lars_subs_member *member, void *owner)
{
    memset(member, 0, sizeof(*member));
    member->owner = owner;
}

int lars_subs_join(struct lars_subs *subs, uint64_t key, struct lars_subs_member *member)
{
    if (map_get(&member->index, key)) {
        return 0;
    }
    uintptr_t *slot = map_get(&subs->modules, key);
    struct member_list *list = slot ? (struct member_list *)*slot : NULL;
    int created = 0;
    if (!list) {
        list = calloc(1, sizeof(*list));
        if (!list) {
            return -ENOMEM;
        }
        created = 1;
    }
    if (list->n == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 4;
        struct lars_subs_member **v = realloc(list->v, cap * sizeof(*v));
        if (!v) {
            goto fail;
        }
        list->v = v;
        list->cap = cap;
    }
    if (map_put(&member->index, key, list->n) < 0) {
        goto fail;
    }
    if (created && map_put(&subs->modules, key, (uintptr_t)list) < 0) {
        map_del(&member->index, key);
        goto fail;
    }
    list->v[list->n++] = member;
    subs->pairs++;
    return 0;

fail:
    if (created) {
        free(list->v);
        free(list);
    }
    return -ENOMEM;
}

void lars_subs_leave_all(struct lars_subs *subs, struct lars_subs_member *member)
{
    struct lars_u64map *index = &member->index;
    for (size_t i = 0; i < index->cap; i++) {
        if (!index->used[i]) {
            continue;
        }
        uint64_t key = index->keys[i];
        size_t pos = index->values[i];
        uintptr_t *slot = map_get(&subs->modules, key);
        if (!slot) {
            continue;
        }
        struct member_list *list = (struct member_list *)*slot;
        struct lars_subs_member *last = list->v[--list->n];
        if (pos < list->n) {
            list->v[pos] = last;
            *map_get(&last->index, key) = pos;
        }
        subs->pairs--;
        if (list->n == 0) {
            map_del(&subs->modules, key);
            free(list->v);
            free(list);
        }
    }
    map_free(index);
}

size_t lars_subs_of(const struct lars_subs *subs, uint64_t key,
                    struct lars_subs_member *const **members)
{
    uintptr_t *slot = map_get(&subs->modules, key);
    if (!slot) {
        *members = NULL;
        return 0;
    }
    const struct member_list *list = (const struct member_list *)*slot;
    *members = list->v;
    return list->n;
}

size_t lars_subs_count(const struct lars_subs *subs)
{
    return subs->pairs;
}
