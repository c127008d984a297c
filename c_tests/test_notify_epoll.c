/*
 * Waiting in an event loop: tickets registered with one notifier, one epoll
 * loop on its fd, decisions made by other threads (releases, a cancel, a
 * close). The loop checks every event (ticket, user value, status), their
 * order of arrival, and that the fd goes quiet once the queue is drained.
 */
#include <sys/epoll.h>
#include <unistd.h>

#include "check.h"

#define K 8

/* Waits (up to 30 s, then fails) until `fd` is readable in `ep`. */
static void wait_readable(int ep, int fd) {
    struct epoll_event ev;
    int n = epoll_wait(ep, &ev, 1, 30000);
    if (n != 1) FAIL_AT("epoll_wait returned %d: the notifier's fd never turned readable", n);
    CHECK(ev.data.fd == fd && (ev.events & EPOLLIN));
}

/* The fd is not readable now. */
static void check_quiet(int ep) {
    struct epoll_event ev;
    CHECK(epoll_wait(ep, &ev, 1, 0) == 0);
}

/* A notifier and an epoll instance watching its fd (level-triggered). */
typedef struct loop {
    mmpool_notifier *n;
    int fd, ep;
} loop;

static loop loop_new(void) {
    loop l;
    CHECK_OK(mmpool_notifier_new(&l.n));
    CHECK_OK(mmpool_notifier_fd(l.n, &l.fd));
    l.ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(l.ep >= 0);
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.fd = l.fd;
    CHECK(epoll_ctl(l.ep, EPOLL_CTL_ADD, l.fd, &ev) == 0);
    return l;
}

static void loop_free(loop *l) {
    CHECK(epoll_ctl(l->ep, EPOLL_CTL_DEL, l->fd, NULL) == 0);
    close(l->ep);
    mmpool_notifier_free(l->n);
}

/* Runs the loop until `want` events arrived, draining at most 3 at a time,
 * into `seen`. */
static void collect_events(loop *l, mmpool_event *seen, size_t want) {
    size_t got = 0;
    while (got < want) {
        wait_readable(l->ep, l->fd);
        size_t count = 0;
        size_t room = want - got < 3 ? want - got : 3;
        CHECK_OK(mmpool_notifier_drain(l->n, seen + got, room, &count));
        CHECK(count > 0); /* readable means an event is queued */
        got += count;
    }
}

typedef struct releaser {
    pthread_t thread;
    mmpool *pool;
    mmpool_lease leases[K];
} releaser;

static void *release_all(void *arg) {
    releaser *r = (releaser *)arg;
    for (int i = 0; i < K; i++) CHECK_OK(mmpool_release(r->pool, r->leases[i]));
    return NULL;
}

static void releases_from_another_thread_wake_the_loop_in_line_order(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(K, &pool));
    releaser r;
    r.pool = pool;
    for (int i = 0; i < K; i++) CHECK_OK(mmpool_acquire(pool, 1, &r.leases[i]));
    loop l = loop_new();
    mmpool_ticket t[K];
    for (int i = 0; i < K; i++) {
        CHECK_OK(mmpool_enqueue(pool, 1, &t[i]));
        CHECK_OK(mmpool_ticket_notify(pool, t[i], l.n, 100 + (uint64_t)i));
    }
    check_quiet(l.ep);
    CHECK(pthread_create(&r.thread, NULL, release_all, &r) == 0);

    mmpool_event seen[K];
    collect_events(&l, seen, K);
    for (int i = 0; i < K; i++) {
        /* In order of arrival, each granted: collecting it does not wait. */
        CHECK_U64(seen[i].ticket.id, t[i].id);
        CHECK_U64(seen[i].user_data, 100 + (uint64_t)i);
        CHECK_STATUS(seen[i].status, MMPOOL_OK);
        mmpool_lease lease;
        CHECK_OK(mmpool_ticket_wait(pool, seen[i].ticket, 0, &lease));
        CHECK_U64(lease.nbytes, 1);
        CHECK_OK(mmpool_release(pool, lease));
    }
    CHECK(pthread_join(r.thread, NULL) == 0);
    check_quiet(l.ep);
    CHECK_U64(mmpool_available_bytes(pool), K);
    CHECK_U64(get_stats(pool).waiters, 0);
    loop_free(&l);
    mmpool_unref(pool);
}

typedef struct canceller {
    pthread_t thread;
    mmpool *pool;
    mmpool_ticket ticket;
} canceller;

static void *cancel_one(void *arg) {
    canceller *c = (canceller *)arg;
    CHECK_OK(mmpool_ticket_cancel(c->pool, c->ticket));
    return NULL;
}

static void *close_pool(void *arg) {
    CHECK_OK(mmpool_close((mmpool *)arg));
    return NULL;
}

static void a_cancel_and_a_close_from_other_threads_reach_the_loop(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(4, &pool));
    mmpool_lease hold;
    CHECK_OK(mmpool_acquire(pool, 4, &hold));
    loop l = loop_new();
    mmpool_ticket t[3];
    for (int i = 0; i < 3; i++) {
        CHECK_OK(mmpool_enqueue(pool, 2, &t[i]));
        CHECK_OK(mmpool_ticket_notify(pool, t[i], l.n, (uint64_t)i));
    }

    /* The middle ticket is cancelled while it waits. */
    canceller c = {0, pool, t[1]};
    CHECK(pthread_create(&c.thread, NULL, cancel_one, &c) == 0);
    mmpool_event ev[3];
    collect_events(&l, ev, 1);
    CHECK(pthread_join(c.thread, NULL) == 0);
    CHECK_U64(ev[0].ticket.id, t[1].id);
    CHECK_U64(ev[0].user_data, 1);
    CHECK_STATUS(ev[0].status, MMPOOL_ERR_INVALID_LEASE);
    mmpool_lease lease = {0, 0};
    CHECK_STATUS(mmpool_ticket_wait(pool, t[1], 0, &lease), MMPOOL_ERR_INVALID_LEASE);
    check_quiet(l.ep);

    /* The pool is closed: the two left leave the line, in order. */
    pthread_t closer;
    CHECK(pthread_create(&closer, NULL, close_pool, pool) == 0);
    collect_events(&l, ev, 2);
    CHECK(pthread_join(closer, NULL) == 0);
    for (int k = 0; k < 2; k++) {
        int i = k == 0 ? 0 : 2;
        CHECK_U64(ev[k].ticket.id, t[i].id);
        CHECK_U64(ev[k].user_data, (uint64_t)i);
        CHECK_STATUS(ev[k].status, MMPOOL_ERR_CLOSED);
        CHECK_STATUS(mmpool_ticket_wait(pool, t[i], 0, &lease), MMPOOL_ERR_CLOSED);
    }
    check_quiet(l.ep);
    CHECK_OK(mmpool_release(pool, hold));
    CHECK_U64(mmpool_available_bytes(pool), 4);
    loop_free(&l);
    mmpool_unref(pool);
}

static void a_freed_notifier_leaves_its_tickets_in_line(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(2, &pool));
    mmpool_lease hold;
    CHECK_OK(mmpool_acquire(pool, 2, &hold));
    mmpool_notifier *n = NULL;
    CHECK_OK(mmpool_notifier_new(&n));
    mmpool_ticket t;
    CHECK_OK(mmpool_enqueue(pool, 2, &t));
    CHECK_OK(mmpool_ticket_notify(pool, t, n, 0));
    mmpool_notifier_free(n);
    CHECK_OK(mmpool_release(pool, hold));
    mmpool_lease lease;
    CHECK_OK(mmpool_ticket_wait(pool, t, 0, &lease));
    CHECK_OK(mmpool_release(pool, lease));
    CHECK_U64(mmpool_available_bytes(pool), 2);
    mmpool_notifier_free(NULL);
    mmpool_unref(pool);
}

int main(void) {
    releases_from_another_thread_wake_the_loop_in_line_order();
    a_cancel_and_a_close_from_other_threads_reach_the_loop();
    a_freed_notifier_leaves_its_tickets_in_line();
    printf("test_notify_epoll: ok\n");
    return 0;
}
