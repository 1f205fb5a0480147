/* SPDX-License-Identifier: MIT */
/*
 * This relay's membership of a cluster: several securechatd sharing one
 * PostgreSQL database (database= a postgresql:// URI) act as one relay.
 * The cluster has its own libpq connection, driven by sd-event and never
 * waited on: a queue of statements sent one at a time, LISTEN on the
 * channels "securechat" (every node) and "securechat_node_<name>" (this
 * node), a heartbeat row in sc_nodes every node-timeout/3, this node's
 * receiving users in sc_presence, and in memory the users online on the
 * other nodes. Notifications (securechatd(8), "SEVERAL RELAYS"):
 *
 *   securechat:               online <node> <user> <fingerprint>
 *                             offline <node> <user>
 *                             kick <user>
 *   securechat_node_<name>:   deliver <user>
 *                             replace <user>
 *
 * The relay and the manager call down into it (a user went online or
 * offline here, a message was committed for a user of another node, an
 * administrator kicked someone); it reports up through ClusterCallbacks,
 * which the manager fills in. A lost connection is retried with backoff
 * (0.5 s doubling to 10 s); on reconnect the node listens again, upserts
 * its row and its users, and reloads the others' users.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "conf.h"
#include "rsa.h"
#include "util.h"

typedef struct Cluster Cluster;

/* A node name and its NUL. */
#define CLUSTER_NODE_MAX (CONFIG_NODE_NAME_MAX + 1)

/* Users online on other nodes are numbered from here up in the order this
 * node heard of them, after every local activation number: a who page's
 * "next" tells the two apart (securechat-protocol(7), "who"). */
#define CLUSTER_POSITION_BASE (UINT64_C(1) << 52)

/* A user whose receiving session is on another node. Read-only outside
 * cluster.c; valid until the next callback or return to the loop. */
typedef struct ClusterUser {
        char user[USERNAME_MAX + 1];    /* first: cluster.c's tree finds it by name */
        char node[CLUSTER_NODE_MAX];
        char fingerprint[RSA_FINGERPRINT_MAX];
        uint64_t position;              /* CLUSTER_POSITION_BASE + n, in order of arrival */
        struct ClusterUser *next, *prev;        /* by position */
        bool stale;                     /* not seen in the reload at connect (yet) */
        bool deliver_queued;            /* a deliver to its node waits to be sent */
} ClusterUser;

/* A row of sc_nodes, as of the last heartbeat. */
typedef struct ClusterNode {
        char name[CLUSTER_NODE_MAX];
        bool alive;                     /* heartbeat within node-timeout */
        uint64_t heartbeat_age_usec;    /* at fetched_usec */
        uint64_t started_realtime_usec;
        uint64_t sessions, receiving, queued;
} ClusterNode;

/* What this node writes into its heartbeat row (sc_nodes.status). */
typedef struct ClusterStatus {
        uint64_t sessions, receiving, queued;
} ClusterStatus;

typedef int (*ClusterReceiverFn)(void *ctx, const char *user, const char *fingerprint);

typedef struct ClusterCallbacks {
        /* u came online on another node, or moved to another (its node
         * and fingerprint are the new ones). */
        void (*online)(void *userdata, const ClusterUser *u);
        /* u, of another node, went offline (freed after the call). */
        void (*offline)(void *userdata, const ClusterUser *u);
        /* Another node says this node's presence row of user is gone (it
         * took this node for dead): announce user again if still here. */
        void (*lost)(void *userdata, const char *user);
        /* A newer receiving session of user is on another node: close ours. */
        void (*replace)(void *userdata, const char *user);
        /* A message for user was committed on another node: pump. */
        void (*deliver)(void *userdata, const char *user);
        /* An administrator kicked user on another node. */
        void (*kick)(void *userdata, const char *user);
        /* The safety net: the last seq queued for user, a local receiver. */
        void (*queued)(void *userdata, const char *user, uint64_t last_seq);
        /* Call fn for each local receiving session (user, fingerprint). */
        int (*foreach_receiver)(void *userdata, ClusterReceiverFn fn, void *ctx);
        void (*status)(void *userdata, ClusterStatus *ret);
} ClusterCallbacks;

/* Copies what it needs of config (database, password, node-name,
 * node-timeout, database-timeout: a restart changes them) and starts
 * connecting. */
int cluster_new(sd_event *event, const Config *config, const ClusterCallbacks *callbacks, void *userdata,
                Cluster **ret);
/* At shutdown, after the loop: deletes this node's presence rows and node
 * row and tells the others they are offline, waiting at most
 * database-timeout for each answer. */
void cluster_stop(Cluster *c);
Cluster *cluster_free(Cluster *c);
static inline void cluster_freep(Cluster **c) { cluster_free(*c); }

const char *cluster_node_name(const Cluster *c);
bool cluster_connected(const Cluster *c);

/* A receiving session of user became active here: claim the user (a node
 * that had it is told to replace its session) and tell everyone. */
void cluster_online(Cluster *c, const char *user, const char *fingerprint);
/* It closed (not replaced): release the user if still ours. */
void cluster_offline(Cluster *c, const char *user);
/* Another node claimed user, who receives here too (two logins in the
 * same instant): the row decides, read once both claims are in. If it
 * names another node, the session here is replaced (callbacks->replace);
 * if this one, the other node hears the same and gives way. */
void cluster_check_claim(Cluster *c, const char *user);
/* A message for user was committed: 1 when user receives on another node,
 * which is told to deliver it; 0 when not. */
int cluster_deliver(Cluster *c, const char *user);
/* Tell every other node to close user's sessions. -ENOTCONN when the
 * database is away. */
int cluster_kick(Cluster *c, const char *user);

/* The users online on other nodes. */
const ClusterUser *cluster_find(Cluster *c, const char *user);
const ClusterUser *cluster_first(Cluster *c);
size_t cluster_n_remote(const Cluster *c);

/* The nodes as of the last heartbeat (*ret_n 0 before the first), and how
 * old that list is. */
const ClusterNode *cluster_nodes(Cluster *c, size_t *ret_n, uint64_t *ret_age_usec);
