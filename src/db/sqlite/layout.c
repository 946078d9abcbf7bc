/*
 * layout.c - the SQLite engine's weight layout: tiles of whole rows in the
 * file's storage type, sized to one tile per 64 KB page (layout/layout.h
 * says how import applies an engine's rules).
 */
#include "../../layout/layout.h"

/* The largest tile of whole rows one 64 KB page holds with its record
 * (a leaf keeps up to 65501 payload bytes in the page): one tile per page,
 * so a scan of the table meets one record per page. */
const layout_rules sqlm_layout_tiles = {
    .name = "tiles",
    .tile_bytes = 65280,
    .page_size = 65536,
};
