/* Bare-metal harness: the C library on an emulated Cortex-M (QEMU's MPS2 boards), as on a chip.
 * QEMU loads [uint32 count][count x NF_INPUT_SIZE int8 inputs] at NF_QEMU_INPUTS; each output is
 * written to the host file outputs.bin through semihosting, and the exit code says what failed:
 * 0 done, 2 the file did not open, 3 nf_selftest differs from the reference, 4 a write failed,
 * 5 nf_image_init refused the frame size. Built with NF_QEMU_FRAMES it checks nf_io.c instead:
 * [uint32 count, width, height, format][count frames] in, each frame's int8 model input out.
 *
 * ticks.bin counts time in SysTick ticks of the board's clock (uint32 each): first a calibration
 * loop of NF_QEMU_CALIBRATION instructions, then one count per nf_invoke (or nf_image_to_input).
 * Run with -icount shift=0, QEMU's clock advances by one instruction executed, so the counts are
 * the instructions the core executed (SysTick has 24 bits: up to 671 M instructions an item); the
 * calibration turns ticks into instructions. Built with NF_QEMU_LAYERS (and -include
 * nf_qemu_layers.h) it also writes layers.bin: each layer's ticks summed over the inputs, the
 * self-test's inference left out.
 *
 * stack.bin (uint32): the most stack the measured calls used, in bytes below main's stack pointer:
 * NF_QEMU_STACK bytes under it are painted before the first call and the lowest word changed is read
 * after the last (NF_QEMU_STACK itself when even the last painted word changed). */
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#ifdef NF_QEMU_FRAMES
#include "nf_io.h"
#endif

#define NF_QEMU_INPUTS 0x20200000u
#define NF_QEMU_CALIBRATION (2u * 0x40000u) /* instructions of the calibration loop (2 per turn) */
#define NF_SYST ((volatile uint32_t *)0xE000E010u) /* SysTick: CTRL, LOAD, VAL (24 bits, counts down) */

extern uint32_t __bss_start, __bss_end, __stack_top;
int main(void);

/* what the compiler may call for copies and zeroing; there is no libc here */
void *memset(void *dst, int c, size_t n) {
  uint8_t *d = dst;
  while (n--) *d++ = (uint8_t)c;
  return dst;
}
void *memcpy(void *dst, const void *src, size_t n) {
  uint8_t *d = dst;
  const uint8_t *s = src;
  while (n--) *d++ = *s++;
  return dst;
}

static int nf_semihost(int op, void *args) {
  register int r0 __asm__("r0") = op;
  register void *r1 __asm__("r1") = args;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void nf_reset(void) {
  for (uint32_t *p = &__bss_start; p < &__bss_end; ++p) *p = 0;
  *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: the FPU on (the library is built for hard float) */
  __asm__ volatile("dsb\n isb");
  const int code = main();
  uint32_t args[2] = {0x20026u, (uint32_t)code}; /* ADP_Stopped_ApplicationExit: QEMU exits with the code */
  nf_semihost(0x20, args);                        /* SYS_EXIT_EXTENDED */
  for (;;) {
  }
}

__attribute__((section(".vectors"), used)) static const void *const nf_vectors[2] = {&__stack_top, (void *)nf_reset};

static uint32_t nf_ticks_since(uint32_t start) { return (start - NF_SYST[2]) & 0xFFFFFFu; }

#define NF_QEMU_STACK (64u * 1024u) /* stack painted under main's frame (the inputs end 512 KB below its top) */
#define NF_QEMU_PAINT 0xA5C3E18Fu

static uint32_t nf_sp(void) {
  uint32_t sp;
  __asm__ volatile("mov %0, sp" : "=r"(sp));
  return sp;
}

/* Paints the NF_QEMU_STACK bytes under sp (volatile: the loop stays a loop, not a call to memset,
 * whose frame would lie in what it paints); returns sp. */
static uint32_t nf_paint_stack(void) {
  const uint32_t top = nf_sp() & ~3u;
  for (volatile uint32_t *p = (volatile uint32_t *)(top - NF_QEMU_STACK); p < (volatile uint32_t *)top - 16; ++p) {
    *p = NF_QEMU_PAINT;
  }
  return top;
}

/* The bytes under top that something wrote since nf_paint_stack(). */
static uint32_t nf_stack_used(uint32_t top) {
  const volatile uint32_t *p = (const volatile uint32_t *)(top - NF_QEMU_STACK);
  while (p < (const volatile uint32_t *)top - 16 && *p == NF_QEMU_PAINT) ++p;
  return top - (uint32_t)p;
}

static uint32_t nf_ticks[4096 + 1]; /* the calibration, then one count per item (the first 4096) */

#ifdef NF_QEMU_LAYERS
uint32_t nf_layer_start, nf_layer_ticks[NF_LAYERS];
#endif

int main(void) {
  const uint32_t *head = (const uint32_t *)NF_QEMU_INPUTS;
  const uint32_t count = head[0];
  static const char path[] = "outputs.bin";
  uint32_t open_args[3] = {(uint32_t)path, 6 /* "wb" */, sizeof path - 1};
  const int fd = nf_semihost(0x01, open_args); /* SYS_OPEN */
  if (fd < 0) return 2;
  NF_SYST[1] = 0xFFFFFFu; /* LOAD: the longest period */
  NF_SYST[2] = 0;         /* VAL: cleared, reloads */
  NF_SYST[0] = 5u;        /* CTRL: on, the processor clock, no interrupt */
  uint32_t start = NF_SYST[2];
  __asm__ volatile(".syntax unified\n mov r0, %0\n1: subs r0, #1\n bne 1b" : : "r"(NF_QEMU_CALIBRATION / 2) : "r0", "cc");
  nf_ticks[0] = nf_ticks_since(start);
#ifdef NF_QEMU_FRAMES
  static nf_image_t image;
  static int8_t input[NF_INPUT_SIZE];
  const uint8_t *frames = (const uint8_t *)(head + 4);
  const size_t bytes = (size_t)head[1] * head[2] * head[3];
  if (nf_image_init(&image, (int32_t)head[1], (int32_t)head[2], (int32_t)head[3])) return 5;
  const uint32_t top = nf_paint_stack();
  for (uint32_t i = 0; i < count; ++i) {
    start = NF_SYST[2];
    nf_image_to_input(&image, frames + i * bytes, input);
    if (i < 4096) nf_ticks[i + 1] = nf_ticks_since(start);
    uint32_t write_args[3] = {(uint32_t)fd, (uint32_t)input, NF_INPUT_SIZE};
    if (nf_semihost(0x05, write_args)) return 4; /* SYS_WRITE: the bytes not written */
  }
#else
  static int8_t output[NF_OUTPUT_SIZE];
  const int8_t *inputs = (const int8_t *)(head + 1);
  const uint32_t top = nf_paint_stack();
#ifdef NF_SELFTEST
  if (nf_selftest()) return 3;
#endif
#ifdef NF_QEMU_LAYERS
  for (uint32_t i = 0; i < NF_LAYERS; ++i) nf_layer_ticks[i] = 0;
#endif
  for (uint32_t i = 0; i < count; ++i) {
    start = NF_SYST[2];
    nf_invoke(inputs + (size_t)i * NF_INPUT_SIZE, output);
    if (i < 4096) nf_ticks[i + 1] = nf_ticks_since(start);
    uint32_t write_args[3] = {(uint32_t)fd, (uint32_t)output, NF_OUTPUT_SIZE};
    if (nf_semihost(0x05, write_args)) return 4; /* SYS_WRITE: the bytes not written */
  }
#endif
  const uint32_t stack[1] = {nf_stack_used(top)};
  uint32_t close_args[1] = {(uint32_t)fd};
  nf_semihost(0x02, close_args); /* SYS_CLOSE */
  static const char ticks_path[] = "ticks.bin";
  uint32_t ticks_args[3] = {(uint32_t)ticks_path, 6, sizeof ticks_path - 1};
  const int tfd = nf_semihost(0x01, ticks_args);
  if (tfd < 0) return 2;
  uint32_t write_args[3] = {(uint32_t)tfd, (uint32_t)nf_ticks, 4 * (1 + (count < 4096 ? count : 4096))};
  if (nf_semihost(0x05, write_args)) return 4;
  close_args[0] = (uint32_t)tfd;
  nf_semihost(0x02, close_args);
  static const char stack_path[] = "stack.bin";
  uint32_t stack_args[3] = {(uint32_t)stack_path, 6, sizeof stack_path - 1};
  const int sfd = nf_semihost(0x01, stack_args);
  if (sfd < 0) return 2;
  uint32_t stack_write[3] = {(uint32_t)sfd, (uint32_t)stack, 4};
  if (nf_semihost(0x05, stack_write)) return 4;
  close_args[0] = (uint32_t)sfd;
  nf_semihost(0x02, close_args);
#ifdef NF_QEMU_LAYERS
  static const char layers_path[] = "layers.bin";
  uint32_t layers_args[3] = {(uint32_t)layers_path, 6, sizeof layers_path - 1};
  const int lfd = nf_semihost(0x01, layers_args);
  if (lfd < 0) return 2;
  uint32_t layer_write[3] = {(uint32_t)lfd, (uint32_t)nf_layer_ticks, 4 * NF_LAYERS};
  if (nf_semihost(0x05, layer_write)) return 4;
  close_args[0] = (uint32_t)lfd;
  nf_semihost(0x02, close_args);
#endif
  return 0;
}
