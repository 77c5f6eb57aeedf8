/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ksplice-pkg's hooks for patch authors. A patch that an update is made from may include this
 * header (`#include <ksplice/hooks.h>`: `ksplice-pkg create` puts it on the include path of the
 * patched tree) to run code when the update is applied or undone, and to add fields to
 * structures the running kernel already holds.
 *
 * Callbacks: a function of the patched file, `static int f(void)` for KSPLICE_PRE_PATCH and
 * `static void f(void)` for the others, named in one of:
 *
 *	KSPLICE_PRE_PATCH(f);     before the new code is switched in; non-zero refuses the update
 *	KSPLICE_POST_PATCH(f);    once every task runs the new code
 *	KSPLICE_PRE_UNPATCH(f);   before the old code is switched back in
 *	KSPLICE_POST_UNPATCH(f);  once every task runs the old code again
 *
 * They become the livepatch callbacks of the update's vmlinux object (see the kernel's
 * Documentation/livepatch/callbacks.rst for when each runs and what it may do).
 *
 * Shadow variables (Documentation/livepatch/shadow-vars.rst): data attached to an existing
 * object, found again by its address and an id of your choosing:
 *
 *	KSPLICE_SHADOW_GET(obj, id)                 the data, or NULL
 *	KSPLICE_SHADOW_GET_OR_ALLOC(obj, id, type)  the data, zeroed on first use (GFP_ATOMIC)
 *	KSPLICE_SHADOW_FREE(obj, id)                detach and free it
 *	KSPLICE_SHADOW_FREE_ALL(id)                 the same for every object (e.g. on unpatch)
 */
#ifndef _KSPLICE_HOOKS_H
#define _KSPLICE_HOOKS_H

#include <linux/compiler.h>
#include <linux/gfp.h>
#include <linux/livepatch.h>

/*
 * Each hook is a pointer in a section of its own that the extractor carries into the update
 * and the generated klp_patch calls; `used` keeps the otherwise unreferenced pointer.
 */
#define KSPLICE_PRE_PATCH(fn)							\
	static int (*const __ksplice_hook_pre_patch_##fn)(void)		\
	__section(".ksplice.hook.pre_patch") __used = fn
#define KSPLICE_POST_PATCH(fn)							\
	static void (*const __ksplice_hook_post_patch_##fn)(void)		\
	__section(".ksplice.hook.post_patch") __used = fn
#define KSPLICE_PRE_UNPATCH(fn)						\
	static void (*const __ksplice_hook_pre_unpatch_##fn)(void)		\
	__section(".ksplice.hook.pre_unpatch") __used = fn
#define KSPLICE_POST_UNPATCH(fn)						\
	static void (*const __ksplice_hook_post_unpatch_##fn)(void)		\
	__section(".ksplice.hook.post_unpatch") __used = fn

#define KSPLICE_SHADOW_GET(obj, id)	klp_shadow_get((obj), (id))
#define KSPLICE_SHADOW_GET_OR_ALLOC(obj, id, type)				\
	((type *)klp_shadow_get_or_alloc((obj), (id), sizeof(type), GFP_ATOMIC,	\
					 NULL, NULL))
#define KSPLICE_SHADOW_FREE(obj, id)	klp_shadow_free((obj), (id), NULL)
#define KSPLICE_SHADOW_FREE_ALL(id)	klp_shadow_free_all((id), NULL)

#endif /* _KSPLICE_HOOKS_H */
