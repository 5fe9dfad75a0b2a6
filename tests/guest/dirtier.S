/*
 * dirtier: a 512-byte boot sector that keeps rewriting guest RAM, for live
 * migrations of a running guest (tests/migration/qpl-demo.py --guest running).
 *
 * SeaBIOS loads this sector at 0x7c00 and jumps to it in real mode.  It
 * switches to 32-bit protected mode with flat 4 GiB segments, takes the
 * timer (8259A PIC remapped to vectors 0x20-0x27, only IRQ0 unmasked; 8254
 * PIT channel 0 as a rate generator) and then, on every timer tick, does a
 * burst of operations on RAM and counts the burst in a heartbeat word.
 * Between bursts it sleeps in HLT (STI; HLT), so it costs the host little
 * CPU, and the rate of writes is bounded by ticks x operations per tick.
 *
 * Each operation, chosen at random (xorshift32, state kept in %ebp):
 *   5/8   copy a run of 4..1024 bytes (whole dwords, any alignment) from a
 *         random place of RAM (the demo's image holds real files) to a random
 *         place of the hot region;
 *   2/8   write 1..16 random bytes at a random place of the hot region;
 *   1/16  copy a whole 4 KiB page over a page of the hot region;
 *   1/16  fill a page of the hot region with zeros.
 * Almost every operation dirties a page; short runs keep the cost per dirtied
 * page low where a hypervisor has to emulate the guest's instructions.
 *
 * Memory it writes: the hot region (from 2 MiB up), one scratch page at 1 MiB
 * (IDT and stack), and below 1 MiB only the 8-byte heartbeat block
 * {u32 magic "QPLG", u32 bursts}.  The block is zeroed at start, so a reboot
 * (a triple fault resets the machine) shows as the counter going back.
 * Every exception vector is absent from the IDT: any fault ends in a triple
 * fault, never in silent wrong behaviour.
 *
 * The parameters are patched into the last 32 bytes before the boot
 * signature by tests/migration/running_guest.py; the layout there must match
 * the `params` block below.
 */

        .set    SCRATCH, 0x100000       /* IDT at +0, stack grows down from +4096 */
        .set    TIMER_VECTOR, 0x20
        .set    MAGIC, 0x474c5051       /* "QPLG" in memory */

        .code16
        .text
        .globl  start
start:
        cli
        cld
        xorw    %ax, %ax
        movw    %ax, %ds
        inb     $0x92, %al              /* fast A20 on; bit 0 (reset) must stay 0 */
        orb     $2, %al
        andb    $0xfe, %al
        outb    %al, $0x92
        lgdtl   gdt
        movl    %cr0, %eax
        orb     $1, %al                 /* CR0.PE */
        movl    %eax, %cr0
        ljmpl   $0x08, $pm32

        .code32
pm32:
        movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss

        /* Zero the scratch page: vectors 0..0x1f become not-present gates. */
        movl    $SCRATCH, %edi
        movl    $1024, %ecx
        xorl    %eax, %eax
        rep stosl
        movl    %edi, %esp              /* stack: the top of the scratch page */
        movl    $gate, %esi
        movl    $SCRATCH + TIMER_VECTOR * 8, %edi
        movsl
        movsl
        lidtl   idtr

        /* PIC and PIT: (port, value) pairs, then the PIT divisor. */
        movl    $io_table, %esi
        movl    $(io_end - io_table) / 2, %ecx
1:      lodsw
        movzbl  %al, %edx
        movb    %ah, %al
        outb    %al, %dx
        loop    1b
        movl    pit_divisor, %eax
        outb    %al, $0x40
        movb    %ah, %al
        outb    %al, $0x40

        movl    heartbeat, %ebx
        movl    $0, 4(%ebx)
        movl    $MAGIC, (%ebx)
        movl    seed, %ebp

/*
 * Sleep until the next tick.  STI takes effect after HLT has begun, so a
 * tick cannot slip in between; the loop only matters for other wake-ups.
 */
idle:
        sti
        hlt
        jmp     idle

/*
 * Timer interrupt.  It always arrives in the HLT above, so there is nothing
 * to return to: the handler drops the interrupt frame, does the burst with
 * interrupts off (the gate cleared IF) and goes back to sleep.  No IRET, which
 * also spares hypervisors that emulate CPL-0 instructions (this host's
 * kvm-pvm cannot emulate a protected-mode IRET).
 */
tick:
        movb    $0x20, %al              /* non-specific EOI to the PIC */
        outb    %al, $0x20
        movl    $SCRATCH + 4096, %esp
        movl    ops_per_tick, %ecx
2:      pushl   %ecx
        call    one_op
        popl    %ecx
        loop    2b
        movl    heartbeat, %ebx
        incl    4(%ebx)
        jmp     idle

/* One random operation.  Clobbers eax, ebx, ecx, edx, esi, edi. */
one_op:
        call    rand
        movl    %eax, %ebx              /* bits 0-3 pick the operation, 4.. its length */
        movl    $hot_lo, %esi
        call    rand_in
        movl    %edx, %edi
        movl    $src_lo, %esi
        call    rand_in
        movl    %edx, %esi
        movl    %ebx, %ecx
        shrl    $4, %ecx
        movl    %ebx, %eax
        andl    $7, %eax
        cmpl    $5, %eax
        jae     3f
        andl    $0xff, %ecx             /* 0-4: a run of real data, 1..256 dwords */
        incl    %ecx
        rep movsl
        ret
3:      cmpl    $7, %eax
        je      5f
        andl    $15, %ecx               /* 5-6: a few random bytes */
        incl    %ecx
4:      call    rand
        stosb
        loop    4b
        ret
5:      andl    $-4096, %edi            /* 7: a whole page, bit 3 says which */
        andl    $-4096, %esi
        movl    $1024, %ecx
        testb   $8, %bl
        jnz     6f
        rep movsl                       /* page copy */
        ret
6:      xorl    %eax, %eax
        rep stosl                       /* zero page */
        ret

/* %edx = lo + (random * span) / 2^32, for the {lo, span} pair at (%esi). */
rand_in:
        call    rand
        mull    4(%esi)
        addl    (%esi), %edx
        ret

/* xorshift32 (Marsaglia 13/17/5) on %ebp; the new state also in %eax. */
rand:
        movl    %ebp, %eax
        shll    $13, %eax
        xorl    %eax, %ebp
        movl    %ebp, %eax
        shrl    $17, %eax
        xorl    %eax, %ebp
        movl    %ebp, %eax
        shll    $5, %eax
        xorl    %eax, %ebp
        movl    %ebp, %eax
        ret

        .p2align 3
/* The GDT; its null descriptor (never loaded) holds the GDTR operand. */
gdt:
        .word   gdt_end - gdt - 1
        .long   gdt
        .word   0
        .quad   0x00cf9a000000ffff      /* 0x08: code, base 0, limit 4 GiB, 32-bit */
        .quad   0x00cf92000000ffff      /* 0x10: data, base 0, limit 4 GiB */
gdt_end:

/* 32-bit interrupt gate for the timer: selector 0x08, present, DPL 0. */
gate:
        .word   tick
        .word   0x08
        .byte   0, 0x8e
        .word   0

idtr:
        .word   (TIMER_VECTOR + 1) * 8 - 1
        .long   SCRATCH

io_table:
        .byte   0x20, 0x11              /* PIC ICW1: edge, cascade, ICW4 follows */
        .byte   0x21, TIMER_VECTOR      /* ICW2: IRQ0-7 at vectors 0x20-0x27 */
        .byte   0x21, 0x04              /* ICW3: slave on IRQ2 */
        .byte   0x21, 0x01              /* ICW4: 8086 mode */
        .byte   0x21, 0xfe              /* OCW1: only IRQ0 unmasked */
        .byte   0xa1, 0xff              /* slave: all masked */
        .byte   0x43, 0x34              /* PIT ch. 0, low then high byte, mode 2 */
io_end:

/* Patched by running_guest.py: 8 little-endian u32 at offset 478. */
        .org    510 - 32
params:
pit_divisor:    .long 0                 /* 1193182 / ticks per second */
ops_per_tick:   .long 0
heartbeat:      .long 0                 /* address of {magic, bursts}, below 1 MiB */
seed:           .long 0                 /* xorshift32 state, non-zero */
hot_lo:         .long 0                 /* writes: [hot_lo, hot_lo + hot_span + 4096) */
hot_span:       .long 0
src_lo:         .long 0                 /* reads: [src_lo, src_lo + src_span + 4096) */
src_span:       .long 0
        .word   0xaa55
