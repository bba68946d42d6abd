/*
 * shm_layout.h - the client segment of the shared-memory fast path
 * (DESIGN §9, docs/shm.md): what liblars and lars-agent agree on.
 *
 * A client creates one segment (a sealed memfd it cannot shrink), sends it
 * with one eventfd per agent worker over the agent's unix socket
 * (<agent.shm_dir>/lars-agent-<udp_base_port>.sock) and the agent maps it.
 * Layout, every part at a fixed offset computed from the worker count:
 *
 *   header       the client's hello (magic, version, workers, size); the
 *                agent's state (open / closed) and start id; per worker a
 *                want mask (slots the client wants served or refilled) and
 *                a sleeping flag (the worker waits on its eventfd)
 *   slots[64]    one module each: the client writes modid/cmdid once, the
 *                owning worker writes status, pick epoch and route seqlock
 *   pick rings   one per slot, worker -> client (shm_ring.h), entries of
 *                struct lars_shm_pick
 *   route blobs  one per slot: the module's GetRouteResponse (protobuf,
 *                caps IPv6, tags included) under the slot's seqlock
 *   report rings one per worker, client -> worker, struct lars_shm_report
 *
 * Trust: the agent reads only the want masks, the positions of the rings
 * (through shm_ring.h, which refuses impossible ones), report entries
 * (copied, then checked) and a slot's modid/cmdid once, when it adopts
 * the slot. Everything else it writes and never reads back, so a client
 * that scribbles over its segment hurts only its own calls.
 */
#ifndef LARS_SHM_LAYOUT_H
#define LARS_SHM_LAYOUT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define LARS_SHM_MAGIC 0x314d48535352414cull /* "LARSSHM1" */
#define LARS_SHM_LAYOUT_VERSION 1u
#define LARS_SHM_SLOTS 64u
#define LARS_SHM_MAX_WORKERS 16u
#define LARS_SHM_PICK_CAPACITY 512u
/* The client asks for a refill when it sees fewer picks than this. */
#define LARS_SHM_PICK_LOW 384u
#define LARS_SHM_REPORT_CAPACITY 4096u
#define LARS_SHM_ROUTE_BYTES 65536u
/* The socket's name in agent.shm_dir: printf format with the base port. */
#define LARS_SHM_SOCKET_FORMAT "%s/lars-agent-%u.sock"

/* A slot's status, written by the owning worker (the client sets PENDING
 * when it asks). Anything but READY: the client uses UDP for the module. */
enum lars_shm_slot_status {
    LARS_SHM_SLOT_FREE = 0,
    LARS_SHM_SLOT_PENDING = 1,  /* asked for, not adopted yet */
    LARS_SHM_SLOT_READY = 2,    /* picks and route published */
    LARS_SHM_SLOT_NOEXIST = 3,  /* no route yet (pulled): UDP answers as usual */
    LARS_SHM_SLOT_UNSERVED = 4, /* not over shm (route too large, module refused, dropped) */
};

enum lars_shm_agent_state {
    LARS_SHM_AGENT_ATTACHING = 0,
    LARS_SHM_AGENT_OPEN = 1,
    LARS_SHM_AGENT_CLOSED = 2, /* the agent stopped or let go: remap or use UDP */
};

struct lars_shm_header {
    /* Written by the client before it sends the segment. */
    uint64_t magic;
    uint32_t version;
    uint32_t workers;
    uint64_t size;
    uint8_t pad0[40];
    /* Written by the agent. */
    _Atomic uint32_t agent_state;
    uint32_t pad1;
    _Atomic uint64_t start_id; /* changes with every agent start */
    uint8_t pad2[48];
    struct {
        _Atomic uint64_t want;     /* client sets bits (slot index), worker takes them */
        _Atomic uint32_t sleeping; /* worker: 1 = write my eventfd after publishing */
        uint8_t pad[52];
    } worker[LARS_SHM_MAX_WORKERS];
};

struct lars_shm_slot {
    int32_t modid; /* client, before it sets the slot's want bit */
    int32_t cmdid;
    _Atomic uint32_t status;    /* enum lars_shm_slot_status */
    _Atomic uint32_t epoch;     /* worker: picks of another epoch are stale */
    _Atomic uint32_t route_seq; /* worker: odd while the route blob is written */
    _Atomic uint32_t route_len; /* worker: bytes of the route blob */
    _Atomic uint32_t served;    /* worker: +1 each time it handled the slot's want */
    uint8_t pad[36];
};

/* One pick, worker -> client. retcode: LARS_RET_SUCC with index into the
 * hosts of the route blob whose route_seq / 2 ends in route_ver (a client
 * holding another route loads the slot's again), or LARS_RET_OVERLOAD /
 * LARS_RET_SYSTEM_ERROR. */
struct lars_shm_pick {
    uint32_t epoch;
    uint16_t index;
    uint8_t retcode;
    uint8_t route_ver;
};

/* One report, client -> worker: the node of slot's module at addr (IPv4:
 * the first 4 bytes, host byte order as memcpy'd from a uint32_t). */
struct lars_shm_report {
    uint16_t slot;
    uint8_t family; /* AF_INET or AF_INET6 */
    uint8_t reserved;
    uint16_t port;
    uint16_t reserved2;
    int32_t retcode;
    uint32_t cost_us;
    uint8_t addr[16];
};

/* On the unix socket: at accept the agent sends a welcome, READY or FULL
 * (then it closes: the client has sent nothing the close could lose);
 * after READY the client sends its hello (with the memfd and the
 * eventfds), the agent answers with a welcome, OK or why not. */
struct lars_shm_hello {
    uint64_t magic;
    uint32_t version;
    uint32_t workers;
    uint64_t size;
};

enum lars_shm_welcome_status {
    LARS_SHM_WELCOME_OK = 0,
    LARS_SHM_WELCOME_REFUSED = 1, /* malformed hello or segment */
    LARS_SHM_WELCOME_WORKERS = 2, /* the client's worker count differs: workers tells */
    LARS_SHM_WELCOME_FULL = 3,    /* agent.shm_max_clients reached (at accept) */
    LARS_SHM_WELCOME_READY = 4,   /* at accept: send the hello */
};

struct lars_shm_welcome {
    uint64_t magic;
    uint32_t status; /* enum lars_shm_welcome_status */
    uint32_t workers;
    uint64_t start_id;
};

/* Where everything is, for a segment of `workers` workers. */
struct lars_shm_geometry {
    size_t slots;         /* offset of slots[0] */
    size_t picks;         /* offset of slot 0's pick ring */
    size_t pick_stride;   /* bytes from one slot's ring to the next */
    size_t routes;        /* offset of slot 0's route blob */
    size_t reports;       /* offset of worker 0's report ring */
    size_t report_stride; /* bytes from one worker's ring to the next */
    size_t size;          /* the whole segment */
};

/* Fills g; 0, or -1 when workers is not in 1..LARS_SHM_MAX_WORKERS. */
int lars_shm_geometry(unsigned workers, struct lars_shm_geometry *g);

#endif /* LARS_SHM_LAYOUT_H */
