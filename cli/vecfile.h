/*
 * vecfile.h - streaming reader of texmex vector files.
 *
 * .fvecs (float32), .bvecs (uint8) and .ivecs (int32): every row is a
 * little-endian int32 dimension followed by that many elements. The format
 * is chosen by the file name's ending. Rows are read one at a time, so
 * memory stays flat whatever the file size.
 */
#ifndef QV_CLI_VECFILE_H
#define QV_CLI_VECFILE_H

#include <stddef.h>
#include <stdint.h>

typedef enum vecfile_format { VECFILE_FVECS, VECFILE_BVECS, VECFILE_IVECS }
    vecfile_format;

typedef struct vecfile vecfile;

/*
 * Open path and read the first row's dimension. Returns 0, or -1 with a
 * message in err naming the file and what is wrong.
 */
int vecfile_open(const char *path, vecfile **out, char *err, size_t errlen);
void vecfile_close(vecfile *vf);

uint32_t vecfile_dim(const vecfile *vf);
vecfile_format vecfile_kind(const vecfile *vf);
/* Rows in the file, from its size (the last may be truncated). */
uint64_t vecfile_rows(const vecfile *vf);

/*
 * Read the next row as floats (fvecs, bvecs) or int32 (ivecs) into row,
 * which holds vecfile_dim() elements. Returns 1 for a row, 0 at the end
 * of the file, -1 with a message naming the row on a malformed row.
 */
int vecfile_read_floats(vecfile *vf, float *row, char *err, size_t errlen);
int vecfile_read_ints(vecfile *vf, int32_t *row, char *err, size_t errlen);

#endif
