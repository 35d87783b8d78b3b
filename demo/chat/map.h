/* troupe-chat: a small string-keyed hash map (owner-only: each map lives
 * inside one actor). Keys are copied; values are the caller's. */
#ifndef TROUPE_CHAT_MAP_H
#define TROUPE_CHAT_MAP_H

#include <stddef.h>

typedef struct map_entry {
    struct map_entry *next;
    void *value;
    char key[];
} map_entry;

typedef struct map {
    map_entry **slots;
    size_t cap; /* a power of two */
    size_t n;
} map;

void map_init(map *m);
void map_free(map *m); /* the values are not freed */
void *map_get(const map *m, const char *key);
/* Sets key -> value (replacing). Returns 0 or -1 (out of memory). */
int map_put(map *m, const char *key, void *value);
/* Removes key; returns its value or NULL. */
void *map_del(map *m, const char *key);
/* Calls fn for every entry (no changes to the map meanwhile). */
void map_each(const map *m, void (*fn)(const char *key, void *value, void *arg), void *arg);

#endif
