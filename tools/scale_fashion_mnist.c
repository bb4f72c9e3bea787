/* scale_fashion_mnist.c BASE.bvecs N OUT.bvecs: N rows of 784 bytes; row i is
 * base[i % 60000], with a deterministic +-3 perturbation for i >= 60000
 * (the 1,000,000 x 784 set of docs/BENCHMARKS.md, "Open at a million"). */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
int main(int argc, char **argv) {
    FILE *in = fopen(argv[1], "rb"); long n = atol(argv[2]);
    FILE *out = fopen(argv[3], "wb");
    int32_t d; unsigned char *base = malloc(60000L * 784);
    for (long i = 0; i < 60000; i++) { fread(&d, 4, 1, in); fread(base + i * 784, 1, 784, in); }
    unsigned char row[784];
    for (long i = 0; i < n; i++) {
        const unsigned char *src = base + (i % 60000) * 784;
        uint64_t x = (uint64_t)i * 0x9E3779B97F4A7C15ull + 1;
        for (int j = 0; j < 784; j++) {
            int v = src[j];
            if (i >= 60000) {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                v += (int)(x % 7) - 3; v = v < 0 ? 0 : v > 255 ? 255 : v;
            }
            row[j] = (unsigned char)v;
        }
        d = 784; fwrite(&d, 4, 1, out); fwrite(row, 1, 784, out);
    }
    fclose(out); return 0;
}
