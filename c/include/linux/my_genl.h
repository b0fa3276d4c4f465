/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR BSD-3-Clause) */
/* Do not edit directly, auto-generated from: */
/*	proto/spec/my_genl.yaml */
/* YNL-GEN uapi header */

#ifndef _UAPI_LINUX_MY_GENL_H
#define _UAPI_LINUX_MY_GENL_H

#define MY_GENL_FAMILY_NAME	"my_genl"
#define MY_GENL_FAMILY_VERSION	1

#define MY_GENL_MAX_MSG_LEN	16384
#define MY_GENL_ECHO_LOG_LEN	1024

enum {
	MY_GENL_A_MSG = 1,
	MY_GENL_A_ID,
	MY_GENL_A_PORTID,

	__MY_GENL_A_MAX,
	MY_GENL_A_MAX = (__MY_GENL_A_MAX - 1)
};

enum {
	MY_GENL_CMD_ECHO = 1,
	MY_GENL_CMD_GET,
	MY_GENL_CMD_EVENT,

	__MY_GENL_CMD_MAX,
	MY_GENL_CMD_MAX = (__MY_GENL_CMD_MAX - 1)
};

#define MY_GENL_MCGRP_EVENTS	"events"

#endif /* _UAPI_LINUX_MY_GENL_H */
