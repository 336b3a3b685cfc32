/* Banned peers. See ban_list.h. */
#include "swarm/ban_list.h"

#include <stdio.h>
#include <string.h>

void ban_list_add(struct ban_list *b, const char *addr, const uint8_t *id, uint64_t now_ms,
                  uint64_t for_ms)
{
    unsigned slot = b->n;
    if (b->n == BAN_LIST_MAX) {
        slot = 0;
        for (unsigned i = 1; i < b->n; i++)
            if (b->e[i].until < b->e[slot].until)
                slot = i;
    } else {
        for (unsigned i = 0; i < b->n; i++)
            if (b->e[i].until <= now_ms) {
                slot = i;
                break;
            }
        if (slot == b->n)
            b->n++;
    }
    snprintf(b->e[slot].addr, sizeof(b->e[slot].addr), "%s", addr ? addr : "");
    b->e[slot].has_id = id != NULL;
    if (id)
        memcpy(b->e[slot].id, id, WIRE_ID_LEN);
    b->e[slot].until = now_ms + for_ms;
}

bool ban_list_has_addr(const struct ban_list *b, const char *addr, uint64_t now_ms)
{
    for (unsigned i = 0; i < b->n; i++)
        if (b->e[i].until > now_ms && b->e[i].addr[0] && strcmp(b->e[i].addr, addr) == 0)
            return true;
    return false;
}

bool ban_list_has_id(const struct ban_list *b, const uint8_t *id, uint64_t now_ms)
{
    for (unsigned i = 0; i < b->n; i++)
        if (b->e[i].until > now_ms && b->e[i].has_id && memcmp(b->e[i].id, id, WIRE_ID_LEN) == 0)
            return true;
    return false;
}
