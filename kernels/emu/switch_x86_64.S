/* Fiber context switch for the CUDA emulator (System V x86-64).
 *
 * void emu_switch(void **save_sp, void *next_sp);
 *   Pushes the callee-saved registers (rbp rbx r12-r15) on the current stack, stores rsp in
 *   *save_sp, loads next_sp and pops the same six registers from it, then returns on the new
 *   stack. A fresh fiber's stack is laid out by emu.cpp as six zero words, the entry address
 *   and a zero fake return address, so the first switch "returns" into the entry function with
 *   rsp % 16 == 8, as after a call.
 */
    .text
    .globl emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
    .section .note.GNU-stack,"",@progbits
