// SPDX-License-Identifier: GPL-2.0-only
/*
 * A 16550A UART at 0x3f8, IRQ 4: what the guest transmits goes to
 * stdout at once; what stdin gives is received.  Enough for Linux's 8250
 * driver to find a 16550A (scratch register, loopback, FIFO bits in IIR)
 * and to run interrupt-driven.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmm.h"

#define RBR_THR	0	/* DLAB=1: divisor low */
#define IER	1	/* DLAB=1: divisor high */
#define IIR_FCR	2
#define LCR	3
#define MCR	4
#define LSR	5
#define MSR	6
#define SCR	7

#define IER_RDI		0x01
#define IER_THRI	0x02
#define IIR_NO_INT	0x01
#define IIR_THRI	0x02
#define IIR_RDI		0x04
#define IIR_FIFO	0xc0
#define FCR_ENABLE	0x01
#define FCR_CLEAR_RX	0x02
#define LCR_DLAB	0x80
#define MCR_LOOP	0x10
#define LSR_DR		0x01
#define LSR_THRE	0x20
#define LSR_TEMT	0x40

#define RX_SIZE		256

static struct {
	pthread_mutex_t lock;
	uint8_t ier, fcr, lcr, mcr, scr, dll, dlm;
	bool thre_pending;	/* THR empty, not yet seen in IIR */
	bool line;		/* level last driven on the IRQ line */
	uint8_t rx[RX_SIZE];
	unsigned int rx_head, rx_count;
} uart = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.dll = 1,	/* 115200 baud */
};

static const char *watch;
static size_t watch_pos;
static struct timespec watch_start;

void serial_watch(const char *s)
{
	watch = *s ? s : NULL;
	clock_gettime(CLOCK_MONOTONIC, &watch_start);
}

/*
 * The first time the guest prints the watched string, note when; say it
 * at the end of that line.
 */
static void watch_byte(uint8_t c)
{
	static long long ms = -1;
	struct timespec now;

	if (!watch)
		return;
	if (ms >= 0) {
		if (c == '\n') {
			fprintf(stderr, "vireo-run: \"%s\" after %lld ms\n",
				watch, ms);
			watch = NULL;
		}
		return;
	}
	if (c != (uint8_t)watch[watch_pos])
		watch_pos = 0;
	if (c == (uint8_t)watch[watch_pos] && !watch[++watch_pos]) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		ms = (now.tv_sec - watch_start.tv_sec) * 1000LL +
		     (now.tv_nsec - watch_start.tv_nsec) / 1000000;
	}
}

static uint8_t iir(void)
{
	uint8_t fifo = uart.fcr & FCR_ENABLE ? IIR_FIFO : 0;

	if ((uart.ier & IER_RDI) && uart.rx_count)
		return fifo | IIR_RDI;
	if ((uart.ier & IER_THRI) && uart.thre_pending)
		return fifo | IIR_THRI;
	return fifo | IIR_NO_INT;
}

/* With uart.lock held: drive IRQ 4 from the pending interrupts. */
static void update_irq(void)
{
	bool level = !(iir() & IIR_NO_INT) && !(uart.mcr & MCR_LOOP);

	if (level != uart.line) {
		uart.line = level;
		irq_line(SERIAL_IRQ, level);
	}
}

static void transmit(uint8_t c)
{
	if (uart.mcr & MCR_LOOP) {
		if (uart.rx_count < RX_SIZE) {
			uart.rx[(uart.rx_head + uart.rx_count) % RX_SIZE] = c;
			uart.rx_count++;
		}
		return;
	}
	/* a terminal that went away does not stop the guest */
	if (write(STDOUT_FILENO, &c, 1) < 0)
		return;
	watch_byte(c);
}

static uint8_t msr(void)
{
	uint8_t m = uart.mcr;

	if (!(m & MCR_LOOP))
		return 0xb0;	/* DCD, DSR, CTS */
	/* loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD */
	return (m & 1) << 5 | (m & 2) << 3 | (m & 4) << 4 | (m & 8) << 4;
}

void serial_io(uint16_t port, uint8_t *data, bool is_write)
{
	unsigned int reg = port - SERIAL_PORT;
	bool dlab;

	pthread_mutex_lock(&uart.lock);
	dlab = uart.lcr & LCR_DLAB;
	if (is_write) {
		uint8_t v = *data;

		switch (reg) {
		case RBR_THR:
			if (dlab) {
				uart.dll = v;
				break;
			}
			transmit(v);
			uart.thre_pending = true;
			break;
		case IER:
			if (dlab) {
				uart.dlm = v;
				break;
			}
			/* enabling THRI while THR is empty interrupts */
			if ((v & IER_THRI) && !(uart.ier & IER_THRI))
				uart.thre_pending = true;
			uart.ier = v & 0x0f;
			break;
		case IIR_FCR:
			uart.fcr = v & 0xc9;
			if (v & FCR_CLEAR_RX)
				uart.rx_count = 0;
			break;
		case LCR:
			uart.lcr = v;
			break;
		case MCR:
			uart.mcr = v & 0x1f;
			break;
		case SCR:
			uart.scr = v;
			break;
		}
	} else {
		uint8_t v = 0;

		switch (reg) {
		case RBR_THR:
			if (dlab) {
				v = uart.dll;
				break;
			}
			if (uart.rx_count) {
				v = uart.rx[uart.rx_head];
				uart.rx_head = (uart.rx_head + 1) % RX_SIZE;
				uart.rx_count--;
			}
			break;
		case IER:
			v = dlab ? uart.dlm : uart.ier;
			break;
		case IIR_FCR:
			v = iir();
			if ((v & 0x0f) == IIR_THRI)
				uart.thre_pending = false;
			break;
		case LCR:
			v = uart.lcr;
			break;
		case MCR:
			v = uart.mcr;
			break;
		case LSR:
			v = LSR_THRE | LSR_TEMT | (uart.rx_count ? LSR_DR : 0);
			break;
		case MSR:
			v = msr();
			break;
		case SCR:
			v = uart.scr;
			break;
		}
		*data = v;
	}
	update_irq();
	pthread_mutex_unlock(&uart.lock);
}

/* stdin, byte by byte, into the receive FIFO while it has room */
static void *rx_thread(void *arg)
{
	uint8_t c;

	(void)arg;
	while (read(STDIN_FILENO, &c, 1) == 1) {
		pthread_mutex_lock(&uart.lock);
		while (uart.rx_count == RX_SIZE) {
			pthread_mutex_unlock(&uart.lock);
			usleep(1000);
			pthread_mutex_lock(&uart.lock);
		}
		uart.rx[(uart.rx_head + uart.rx_count) % RX_SIZE] = c;
		uart.rx_count++;
		update_irq();
		pthread_mutex_unlock(&uart.lock);
	}
	return NULL;
}

void serial_init(void)
{
	pthread_t t;

	/* with stdin at its end (/dev/null) the thread ends at once */
	if (!pthread_create(&t, NULL, rx_thread, NULL))
		pthread_detach(t);
}
