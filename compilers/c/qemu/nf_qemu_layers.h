/* Per-layer timing for the QEMU harness (nf_qemu.c built with NF_QEMU_LAYERS): GCC's -include puts
 * this before model.c, whose NF_LAYER_BEGIN / NF_LAYER_END around each layer then read SysTick. */
#ifndef NF_QEMU_LAYERS_H
#define NF_QEMU_LAYERS_H

#include <stdint.h>

extern uint32_t nf_layer_start;
extern uint32_t nf_layer_ticks[];
#define NF_SYST_VAL (*(volatile uint32_t *)0xE000E018u) /* SysTick's current value, counting down */
#define NF_LAYER_BEGIN(i) (nf_layer_start = NF_SYST_VAL)
#define NF_LAYER_END(i) (nf_layer_ticks[i] += (nf_layer_start - NF_SYST_VAL) & 0xFFFFFFu)

#endif
