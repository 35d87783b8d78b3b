/* troupe-chat: the string map (see map.h). Chained buckets, FNV-1a,
 * doubled at a load of 1. */
#include "map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    }
    return h;
}

void map_init(map *m)
{
    m->slots = NULL;
    m->cap = 0;
    m->n = 0;
}

void map_free(map *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        for (map_entry *e = m->slots[i], *next; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(m->slots);
    map_init(m);
}

static map_entry **find(const map *m, const char *key)
{
    if (m->cap == 0) {
        return NULL;
    }
    map_entry **p = &m->slots[hash(key) & (m->cap - 1)];
    while (*p != NULL && strcmp((*p)->key, key) != 0) {
        p = &(*p)->next;
    }
    return p;
}

void *map_get(const map *m, const char *key)
{
    map_entry **p = find(m, key);
    return p != NULL && *p != NULL ? (*p)->value : NULL;
}

static int grow(map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    map_entry **slots = calloc(cap, sizeof(*slots));
    if (slots == NULL) {
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        for (map_entry *e = m->slots[i], *next; e != NULL; e = next) {
            next = e->next;
            map_entry **s = &slots[hash(e->key) & (cap - 1)];
            e->next = *s;
            *s = e;
        }
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int map_put(map *m, const char *key, void *value)
{
    map_entry **p = find(m, key);
    if (p != NULL && *p != NULL) {
        (*p)->value = value;
        return 0;
    }
    if (m->n >= m->cap && grow(m) < 0) {
        return -1;
    }
    size_t len = strlen(key) + 1;
    map_entry *e = malloc(sizeof(*e) + len);
    if (e == NULL) {
        return -1;
    }
    memcpy(e->key, key, len);
    e->value = value;
    map_entry **s = &m->slots[hash(key) & (m->cap - 1)];
    e->next = *s;
    *s = e;
    m->n++;
    return 0;
}

void *map_del(map *m, const char *key)
{
    map_entry **p = find(m, key);
    if (p == NULL || *p == NULL) {
        return NULL;
    }
    map_entry *e = *p;
    void *v = e->value;
    *p = e->next;
    free(e);
    m->n--;
    return v;
}

void map_each(const map *m, void (*fn)(const char *key, void *value, void *arg), void *arg)
{
    for (size_t i = 0; i < m->cap; i++) {
        for (map_entry *e = m->slots[i]; e != NULL; e = e->next) {
            fn(e->key, e->value, arg);
        }
    }
}
