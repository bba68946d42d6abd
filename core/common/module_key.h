/*
 * module_key.h - the one key and hash for modules (modid + cmdid) used by
 * every hash table of modules: the agent's route tables, the dns thread's
 * wanted set, dns_lars, lars-dns subscriptions.
 *
 * Header-only (static inline) so plugins and contrib programs use it without
 * linking core symbols. Any thread.
 *
 * Why a full finalizer: a plain multiplicative hash taking high bits of
 * `key * golden` (key = modid << 32 | cmdid) ignores modid entirely below
 * 2^15 buckets (modid only reaches bits 32 and up of the product, which the
 * `>> 17` and the mask drop), so 40k modules sharing a cmdid landed in one
 * bucket. The splitmix64 finalizer mixes every input bit into every output
 * bit, so the low bits alone index well at any power-of-two size.
 */
#ifndef LARS_MODULE_KEY_H
#define LARS_MODULE_KEY_H

#include <stdint.h>

/* The 64-bit key of a module: modid in the high half, cmdid in the low. */
static inline uint64_t lars_module_key(int32_t modid, int32_t cmdid)
{
    return (uint64_t)(uint32_t)modid << 32 | (uint32_t)cmdid;
}

/* A well-mixed hash of a module key (splitmix64 finalizer): use its low bits
 * as the bucket of a power-of-two table (hash & (n - 1)). */
static inline uint64_t lars_module_key_hash(uint64_t key)
{
    key ^= key >> 30;
    key *= 0xbf58476d1ce4e5b9ull;
    key ^= key >> 27;
    key *= 0x94d049bb133111ebull;
    key ^= key >> 31;
    return key;
}

/* The hash of a module by its ids. */
static inline uint64_t lars_module_hash(int32_t modid, int32_t cmdid)
{
    return lars_module_key_hash(lars_module_key(modid, cmdid));
}

#endif /* LARS_MODULE_KEY_H */
