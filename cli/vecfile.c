#include "cli/vecfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"

struct vecfile {
    FILE *f;
    const char *path;
    vecfile_format format;
    uint32_t dim;
    size_t elem_size;
    uint64_t rows;
    uint64_t row;          /* rows read so far */
    unsigned char *raw;    /* one row's elements as stored */
};

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int format_of(const char *path, vecfile_format *fmt, size_t *elem)
{
    if (ends_with(path, ".fvecs"))
        *fmt = VECFILE_FVECS, *elem = 4;
    else if (ends_with(path, ".bvecs"))
        *fmt = VECFILE_BVECS, *elem = 1;
    else if (ends_with(path, ".ivecs"))
        *fmt = VECFILE_IVECS, *elem = 4;
    else
        return -1;
    return 0;
}

int vecfile_open(const char *path, vecfile **out, char *err, size_t errlen)
{
    vecfile *vf = qv_calloc(1, sizeof *vf);
    int32_t dim;
    struct stat st;
    if (!vf) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    vf->path = path;
    if (format_of(path, &vf->format, &vf->elem_size) != 0) {
        snprintf(err, errlen, "%s: unknown format; expected a name ending in "
                 ".fvecs, .bvecs or .ivecs", path);
        goto fail;
    }
    vf->f = fopen(path, "rb");
    if (!vf->f || fstat(fileno(vf->f), &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (fread(&dim, sizeof dim, 1, vf->f) != 1) {
        snprintf(err, errlen, "%s: empty file or shorter than one row header",
                 path);
        goto fail;
    }
    if (dim <= 0 || dim > (1 << 20)) {
        snprintf(err, errlen, "%s: row 0 has dimension %d", path, dim);
        goto fail;
    }
    vf->dim = (uint32_t)dim;
    vf->rows = (uint64_t)st.st_size / (4 + vf->dim * vf->elem_size);
    vf->raw = qv_malloc(vf->dim * vf->elem_size);
    if (!vf->raw) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    rewind(vf->f);
    *out = vf;
    return 0;
fail:
    vecfile_close(vf);
    return -1;
}

void vecfile_close(vecfile *vf)
{
    if (!vf)
        return;
    if (vf->f)
        fclose(vf->f);
    qv_mem_free(vf->raw);
    qv_mem_free(vf);
}

uint32_t vecfile_dim(const vecfile *vf) { return vf->dim; }
vecfile_format vecfile_kind(const vecfile *vf) { return vf->format; }
uint64_t vecfile_rows(const vecfile *vf) { return vf->rows; }

/* Read the next row's elements into vf->raw. */
static int read_raw(vecfile *vf, char *err, size_t errlen)
{
    int32_t dim;
    size_t got = fread(&dim, 1, sizeof dim, vf->f);
    if (got == 0 && feof(vf->f))
        return 0;
    if (got != sizeof dim) {
        snprintf(err, errlen, "%s: row %llu: truncated header", vf->path,
                 (unsigned long long)vf->row);
        return -1;
    }
    if (dim != (int32_t)vf->dim) {
        snprintf(err, errlen, "%s: row %llu: dimension %d, expected %u",
                 vf->path, (unsigned long long)vf->row, dim, vf->dim);
        return -1;
    }
    if (fread(vf->raw, vf->elem_size, vf->dim, vf->f) != vf->dim) {
        snprintf(err, errlen, "%s: row %llu: truncated (file ends inside "
                 "the row)", vf->path, (unsigned long long)vf->row);
        return -1;
    }
    vf->row++;
    return 1;
}

int vecfile_read_floats(vecfile *vf, float *row, char *err, size_t errlen)
{
    if (vf->format == VECFILE_IVECS) {
        snprintf(err, errlen, "%s: an .ivecs file holds ids, not vectors",
                 vf->path);
        return -1;
    }
    int rc = read_raw(vf, err, errlen);
    if (rc != 1)
        return rc;
    if (vf->format == VECFILE_FVECS) {
        memcpy(row, vf->raw, vf->dim * sizeof(float));
    } else {
        for (uint32_t i = 0; i < vf->dim; i++)
            row[i] = (float)vf->raw[i];
    }
    return 1;
}

int vecfile_read_ints(vecfile *vf, int32_t *row, char *err, size_t errlen)
{
    if (vf->format != VECFILE_IVECS) {
        snprintf(err, errlen, "%s: expected an .ivecs file", vf->path);
        return -1;
    }
    int rc = read_raw(vf, err, errlen);
    if (rc == 1)
        memcpy(row, vf->raw, vf->dim * sizeof(int32_t));
    return rc;
}
