/*
 * api.h - the DuckDB C API subset sqlm uses, declared by hand: the
 * library comes from the npm package @duckdb/node-bindings-linux-x64, which
 * ships no header.  Checked against duckdb.h of the pinned version
 * (scripts/install-duckdb.sh).  The functions are loaded with dlopen at run
 * time (duckdb/api.c), so sqlm builds and runs without the library.  Shared
 * by the DuckDB engine (duckdb/engine.c) and its native functions
 * (duckdb/functions.c) only.
 */
#ifndef SQLM_DUCKDB_API_H
#define SQLM_DUCKDB_API_H

#include "../engine.h"

/* ------------------------------------------------------ the C API subset */

typedef uint64_t idx_t;
typedef int duckdb_state;             /* DuckDBSuccess = 0, DuckDBError = 1 */
typedef int duckdb_type;              /* enum DUCKDB_TYPE */
typedef void *duckdb_database, *duckdb_connection, *duckdb_prepared_statement, *duckdb_config,
    *duckdb_data_chunk, *duckdb_vector, *duckdb_logical_type, *duckdb_value, *duckdb_appender;

/* Passed by value to duckdb_fetch_chunk: its layout must match exactly. */
typedef struct duckdb_result {
    idx_t deprecated_column_count;
    idx_t deprecated_row_count;
    idx_t deprecated_rows_changed;
    void *deprecated_columns;
    char *deprecated_error_message;
    void *internal_data;
} duckdb_result;
_Static_assert(sizeof(duckdb_result) == 48, "duckdb_result is 48 bytes in duckdb.h");

/* A VARCHAR or BLOB in a vector: 16 bytes, inlined when at most 12. */
typedef struct duckdb_string_t {
    uint32_t length;
    char prefix[4];
    char *ptr;
} duckdb_string_t;

typedef struct duckdb_list_entry {
    uint64_t offset;
    uint64_t length;
} duckdb_list_entry;

enum {
    T_BOOLEAN = 1, T_TINYINT, T_SMALLINT, T_INTEGER, T_BIGINT, T_UTINYINT, T_USMALLINT,
    T_UINTEGER, T_UBIGINT, T_FLOAT, T_DOUBLE, T_HUGEINT = 16, T_VARCHAR = 17, T_BLOB = 18,
    T_LIST = 24, T_UHUGEINT = 32, T_ARRAY = 33,
};

#define DUCKDB_FUNCS(X)                                                                        \
    X(const char *, duckdb_library_version, (void))                                            \
    X(duckdb_state, duckdb_create_config, (duckdb_config *))                                   \
    X(duckdb_state, duckdb_set_config, (duckdb_config, const char *, const char *))            \
    X(void, duckdb_destroy_config, (duckdb_config *))                                          \
    X(duckdb_state, duckdb_open_ext, (const char *, duckdb_database *, duckdb_config, char **)) \
    X(void, duckdb_close, (duckdb_database *))                                                 \
    X(duckdb_state, duckdb_connect, (duckdb_database, duckdb_connection *))                    \
    X(void, duckdb_disconnect, (duckdb_connection *))                                          \
    X(void, duckdb_free, (void *))                                                             \
    X(duckdb_state, duckdb_query, (duckdb_connection, const char *, duckdb_result *))          \
    X(void, duckdb_destroy_result, (duckdb_result *))                                          \
    X(const char *, duckdb_result_error, (duckdb_result *))                                    \
    X(idx_t, duckdb_column_count, (duckdb_result *))                                           \
    X(duckdb_logical_type, duckdb_column_logical_type, (duckdb_result *, idx_t))               \
    X(duckdb_type, duckdb_get_type_id, (duckdb_logical_type))                                  \
    X(duckdb_logical_type, duckdb_list_type_child_type, (duckdb_logical_type))                 \
    X(duckdb_logical_type, duckdb_array_type_child_type, (duckdb_logical_type))                \
    X(idx_t, duckdb_array_type_array_size, (duckdb_logical_type))                              \
    X(duckdb_logical_type, duckdb_create_logical_type, (duckdb_type))                          \
    X(void, duckdb_destroy_logical_type, (duckdb_logical_type *))                              \
    X(duckdb_data_chunk, duckdb_fetch_chunk, (duckdb_result))                                  \
    X(idx_t, duckdb_data_chunk_get_size, (duckdb_data_chunk))                                  \
    X(duckdb_vector, duckdb_data_chunk_get_vector, (duckdb_data_chunk, idx_t))                 \
    X(void, duckdb_destroy_data_chunk, (duckdb_data_chunk *))                                  \
    X(void *, duckdb_vector_get_data, (duckdb_vector))                                         \
    X(uint64_t *, duckdb_vector_get_validity, (duckdb_vector))                                 \
    X(duckdb_vector, duckdb_list_vector_get_child, (duckdb_vector))                            \
    X(duckdb_vector, duckdb_array_vector_get_child, (duckdb_vector))                           \
    X(duckdb_state, duckdb_prepare, (duckdb_connection, const char *, duckdb_prepared_statement *)) \
    X(const char *, duckdb_prepare_error, (duckdb_prepared_statement))                         \
    X(void, duckdb_destroy_prepare, (duckdb_prepared_statement *))                             \
    X(idx_t, duckdb_nparams, (duckdb_prepared_statement))                                      \
    X(duckdb_state, duckdb_clear_bindings, (duckdb_prepared_statement))                        \
    X(duckdb_state, duckdb_bind_int64, (duckdb_prepared_statement, idx_t, int64_t))            \
    X(duckdb_state, duckdb_bind_double, (duckdb_prepared_statement, idx_t, double))            \
    X(duckdb_state, duckdb_bind_varchar_length, (duckdb_prepared_statement, idx_t, const char *, idx_t)) \
    X(duckdb_state, duckdb_bind_blob, (duckdb_prepared_statement, idx_t, const void *, idx_t)) \
    X(duckdb_state, duckdb_bind_null, (duckdb_prepared_statement, idx_t))                      \
    X(duckdb_state, duckdb_bind_value, (duckdb_prepared_statement, idx_t, duckdb_value))       \
    X(duckdb_state, duckdb_execute_prepared, (duckdb_prepared_statement, duckdb_result *))     \
    X(duckdb_value, duckdb_create_float, (float))                                              \
    X(duckdb_value, duckdb_create_list_value, (duckdb_logical_type, duckdb_value *, idx_t))    \
    X(void, duckdb_destroy_value, (duckdb_value *))                                          \
    X(duckdb_state, duckdb_appender_create, (duckdb_connection, const char *, const char *, duckdb_appender *)) \
    X(const char *, duckdb_appender_error, (duckdb_appender))                                  \
    X(duckdb_state, duckdb_appender_destroy, (duckdb_appender *))                              \
    X(idx_t, duckdb_appender_column_count, (duckdb_appender))                                  \
    X(duckdb_logical_type, duckdb_appender_column_type, (duckdb_appender, idx_t))              \
    X(duckdb_state, duckdb_append_data_chunk, (duckdb_appender, duckdb_data_chunk))            \
    X(duckdb_data_chunk, duckdb_create_data_chunk, (duckdb_logical_type *, idx_t))             \
    X(void, duckdb_data_chunk_set_size, (duckdb_data_chunk, idx_t))                            \
    X(duckdb_state, duckdb_list_vector_reserve, (duckdb_vector, idx_t))                        \
    X(duckdb_state, duckdb_list_vector_set_size, (duckdb_vector, idx_t))                       \
    X(void, duckdb_vector_assign_string_element_len, (duckdb_vector, idx_t, const char *, idx_t))

/* Scalar functions (native mode only; loaded when first needed). */
typedef void *duckdb_function_info, *duckdb_scalar_function;
typedef void (*duckdb_scalar_function_t)(duckdb_function_info, duckdb_data_chunk, duckdb_vector);

#define DUCKDB_UDF_FUNCS(X)                                                                    \
    X(duckdb_scalar_function, duckdb_create_scalar_function, (void))                           \
    X(void, duckdb_destroy_scalar_function, (duckdb_scalar_function *))                        \
    X(void, duckdb_scalar_function_set_name, (duckdb_scalar_function, const char *))           \
    X(void, duckdb_scalar_function_add_parameter, (duckdb_scalar_function, duckdb_logical_type)) \
    X(void, duckdb_scalar_function_set_return_type, (duckdb_scalar_function, duckdb_logical_type)) \
    X(void, duckdb_scalar_function_set_function, (duckdb_scalar_function, duckdb_scalar_function_t)) \
    X(duckdb_state, duckdb_register_scalar_function, (duckdb_connection, duckdb_scalar_function)) \
    X(void, duckdb_scalar_function_set_error, (duckdb_function_info, const char *))           \
    X(void, duckdb_scalar_function_set_varargs, (duckdb_scalar_function, duckdb_logical_type)) \
    X(duckdb_logical_type, duckdb_create_list_type, (duckdb_logical_type))                     \
    X(duckdb_logical_type, duckdb_create_array_type, (duckdb_logical_type, idx_t))             \
    X(idx_t, duckdb_data_chunk_get_column_count, (duckdb_data_chunk))                          \
    X(void, duckdb_vector_ensure_validity_writable, (duckdb_vector))                           \
    X(void, duckdb_validity_set_row_invalid, (uint64_t *, idx_t))


/* The library's functions, filled by sqlm_duckdb_load(); the scalar-function
 * ones may be NULL (sqlm_duckdb_udf_missing names the first). */
struct sqlm_duckdb_api {
#define X(ret, name, args) ret(*name) args;
    DUCKDB_FUNCS(X)
    DUCKDB_UDF_FUNCS(X)
#undef X
};
extern struct sqlm_duckdb_api sqlm_duckdb_api;
extern const char *sqlm_duckdb_udf_missing;   /* the first scalar-function symbol the library lacks */
/* the three DuckDB files call the library as api.duckdb_... */
#define api sqlm_duckdb_api

/* Whether row is valid (not NULL) under a vector's validity mask (NULL:
 * every row is). */
static inline bool row_valid(const uint64_t *mask, idx_t row) { return !mask || (mask[row / 64] >> (row % 64)) & 1; }

/* Register sqlm's native functions (duckdb/functions.c) on connection con
 * of the database at path (for messages). */
int sqlm_duckdb_register_functions(duckdb_connection con, const char *path);

#endif /* SQLM_DUCKDB_API_H */
