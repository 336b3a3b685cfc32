/* Peers this agent will not talk to for a while: a pure table, no I/O.
 *
 * A peer that sent a piece failing its hash is banned by the address we
 * dialed (so we do not dial it again) and by its peer id (it may dial us
 * from any port). The table holds at most BAN_LIST_MAX entries; a new ban
 * takes an expired slot, else the one expiring first. Every call takes the
 * current time in milliseconds.
 */
#ifndef SHOAL_BAN_LIST_H
#define SHOAL_BAN_LIST_H

#include <stdbool.h>
#include <stdint.h>

#include "shoal/wire.h"

#define BAN_LIST_MAX 64
#define BAN_LIST_ADDR_MAX 72

struct ban_list {
    struct {
        char addr[BAN_LIST_ADDR_MAX];
        uint8_t id[WIRE_ID_LEN];
        bool has_id;
        uint64_t until;
    } e[BAN_LIST_MAX];
    unsigned n;
};

/* Bans addr (copied, truncated to fit) and id (may be NULL) until now_ms +
 * for_ms. */
void ban_list_add(struct ban_list *b, const char *addr, const uint8_t *id, uint64_t now_ms,
                  uint64_t for_ms);
bool ban_list_has_addr(const struct ban_list *b, const char *addr, uint64_t now_ms);
bool ban_list_has_id(const struct ban_list *b, const uint8_t *id, uint64_t now_ms);

#endif
