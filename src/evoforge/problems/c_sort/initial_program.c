/* Sort an array of ints in place, ascending: void sort_ints(int *a, int n). */

/* EVOLVE-BLOCK-START */
/* Quicksort (middle pivot, Hoare partition) that leaves short ranges to insertion sort. */
enum { SMALL = 2 }; /* ranges shorter than SMALL elements are finished by insertion sort */

static void insertion_sort(int *a, int n)
{
    for (int i = 1; i < n; i++) {
        int v = a[i];
        int j = i;
        while (j > 0 && a[j - 1] > v) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

static void quick_sort(int *a, int n)
{
    while (n >= SMALL && n > 1) {
        int pivot = a[n / 2];
        int i = 0;
        int j = n - 1;
        while (i <= j) {
            while (a[i] < pivot)
                i++;
            while (a[j] > pivot)
                j--;
            if (i <= j) {
                int t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        /* recurse into the smaller side, loop on the larger one */
        if (j + 1 < n - i) {
            quick_sort(a, j + 1);
            a += i;
            n -= i;
        } else {
            quick_sort(a + i, n - i);
            n = j + 1;
        }
    }
    insertion_sort(a, n);
}

void sort_ints(int *a, int n)
{
    quick_sort(a, n);
}
/* EVOLVE-BLOCK-END */
