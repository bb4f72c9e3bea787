/* exact_topk_bvecs.c BASE.bvecs QUERY.bvecs NQ K OUT.ivecs: exact L2 top-K ids
 * of the first NQ 784-d queries, by a scan of the base (ground truth for
 * tools/scale_fashion_mnist.c sets). */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
int main(int argc, char **argv) {
    FILE *b = fopen(argv[1], "rb"), *q = fopen(argv[2], "rb"), *o = fopen(argv[5], "wb");
    long nq = atol(argv[3]); int k = atoi(argv[4]); int32_t d;
    unsigned char *qs = malloc(nq * 784);
    for (long i = 0; i < nq; i++) { fread(&d, 4, 1, q); fread(qs + i * 784, 1, 784, q); }
    long *best = malloc(nq * k * sizeof(long)); double *bd = malloc(nq * k * sizeof(double));
    for (long i = 0; i < nq * k; i++) { best[i] = -1; bd[i] = 1e300; }
    unsigned char row[784];
    for (long r = 0; fread(&d, 4, 1, b) == 1 && fread(row, 1, 784, b) == 784; r++) {
        for (long i = 0; i < nq; i++) {
            long s = 0; const unsigned char *x = qs + i * 784;
            for (int j = 0; j < 784; j++) { int t = (int)x[j] - row[j]; s += t * t; }
            double *dd = bd + i * k; long *bb = best + i * k;
            if (s >= dd[k - 1]) continue;
            int p = k - 1; while (p > 0 && dd[p - 1] > s) { dd[p] = dd[p - 1]; bb[p] = bb[p - 1]; p--; }
            dd[p] = s; bb[p] = r;
        }
    }
    for (long i = 0; i < nq; i++) { d = k; fwrite(&d, 4, 1, o); for (int j = 0; j < k; j++) { int32_t v = best[i * k + j]; fwrite(&v, 4, 1, o); } }
    fclose(o); return 0;
}
