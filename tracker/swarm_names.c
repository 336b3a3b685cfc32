/* Names of the announce events, and their parsing from the API's strings. */
#include <string.h>

#include "shoal/error.h"
#include "swarm.h"

static const char *const event_names[] = {
#define XX(name, text) text,
    TRACKER_EVENT_MAP(XX)
#undef XX
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

const char *tracker_event_name(enum tracker_event ev)
{
    return (size_t)ev < NELEM(event_names) ? event_names[ev] : "unknown";
}

int tracker_event_parse(const char *s, enum tracker_event *out)
{
    for (size_t i = 0; s != NULL && i < NELEM(event_names); i++) {
        if (strcmp(s, event_names[i]) == 0) {
            *out = (enum tracker_event)i;
            return 0;
        }
    }
    return SHOAL_EPARSE;
}
