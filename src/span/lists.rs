//! Lists of spans: a size class's partial spans (doubly linked, through the header's
//! `prev` and `next`) and the span caches' stacks of free runs (singly linked by `next`,
//! with a count).

use super::Span;
use core::ptr;

/// A doubly linked list of spans (a size class's partial spans).
pub(crate) struct SpanDList;

impl SpanDList {
    /// Pushes `span` at the head of the list at `head`.
    ///
    /// # Safety
    /// `span` is a valid header in no list; `head` points at a valid list.
    #[inline]
    pub(crate) unsafe fn push(head: *mut *mut Span, span: *mut Span) {
        // SAFETY: per the contract both are valid and exclusively owned by the heap.
        unsafe {
            let old = *head;
            (*span).prev = ptr::null_mut();
            (*span).next = old;
            if !old.is_null() {
                (*old).prev = span;
            }
            *head = span;
        }
    }

    /// Unlinks `span` from the list at `head`.
    ///
    /// # Safety
    /// `span` is in the list at `head`.
    #[inline]
    pub(crate) unsafe fn remove(head: *mut *mut Span, span: *mut Span) {
        // SAFETY: per the contract all linked headers are valid.
        unsafe {
            let prev = (*span).prev;
            let next = (*span).next;
            if prev.is_null() {
                *head = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            (*span).prev = ptr::null_mut();
            (*span).next = ptr::null_mut();
        }
    }
}

/// A singly linked stack of free span runs with a count (a span cache).
///
/// Invariant: `head` starts a null-terminated chain, linked by `next`, of exactly `count`
/// free run headers that no other list holds. Only [`SpanStack::push`] and
/// [`SpanStack::push_chain`] (unsafe, with that as their contract) add runs, and the
/// fields are private, so the safe methods that walk and cut the chain rely on it.
pub(crate) struct SpanStack {
    /// Top of the stack.
    head: *mut Span,
    /// Runs on the stack.
    count: usize,
}

impl SpanStack {
    /// An empty stack.
    pub(crate) const EMPTY: SpanStack = SpanStack {
        head: ptr::null_mut(),
        count: 0,
    };

    /// Runs on the stack.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Pushes a free run.
    ///
    /// # Safety
    /// `span` is a free run header no list holds.
    #[inline]
    pub(crate) unsafe fn push(&mut self, span: *mut Span) {
        // SAFETY: `span` is a free run header no list holds (the contract): its link is
        // ours to write.
        unsafe { (*span).next = self.head };
        self.head = span;
        self.count += 1;
    }

    /// Detaches up to `n` runs from the top as a null-terminated chain linked by `next`;
    /// returns its head and length.
    pub(crate) fn take_chain(&mut self, n: usize) -> (*mut Span, usize) {
        let head = self.head;
        let mut taken = 0;
        let mut last: *mut Span = ptr::null_mut();
        let mut cur = head;
        while taken < n && !cur.is_null() {
            last = cur;
            // SAFETY: every span on the stack is a valid header.
            cur = unsafe { (*cur).next };
            taken += 1;
        }
        if !last.is_null() {
            // SAFETY: `last` is on the stack.
            unsafe { (*last).next = ptr::null_mut() };
        }
        self.head = cur;
        self.count -= taken;
        (if taken == 0 { ptr::null_mut() } else { head }, taken)
    }

    /// Pushes a null-terminated chain of `n` free runs.
    ///
    /// # Safety
    /// `head` starts a chain of exactly `n` free run headers no list holds.
    pub(crate) unsafe fn push_chain(&mut self, head: *mut Span, n: usize) {
        if n == 0 {
            return;
        }
        let mut tail = head;
        // SAFETY: per the contract the chain has n valid headers.
        unsafe {
            while !(*tail).next.is_null() {
                tail = (*tail).next;
            }
            (*tail).next = self.head;
        }
        self.head = head;
        self.count += n;
    }

    /// Detaches the runs stamped at or before `cutoff` (`cached_at`), which lie at the
    /// bottom when stamps never decrease from bottom to top; returns the chain (linked by
    /// `next`, null-terminated) and its length.
    pub(crate) fn cut_stamped_before(&mut self, cutoff: u64) -> (*mut Span, usize) {
        let mut kept = 0;
        let mut above: *mut Span = ptr::null_mut();
        let mut cur = self.head;
        // SAFETY: every span on the stack is a valid header.
        unsafe {
            while !cur.is_null() && (*cur).cached_at > cutoff {
                above = cur;
                cur = (*cur).next;
                kept += 1;
            }
            if cur.is_null() {
                return (cur, 0);
            }
            if above.is_null() {
                self.head = ptr::null_mut();
            } else {
                (*above).next = ptr::null_mut();
            }
        }
        let cut = self.count - kept;
        self.count = kept;
        (cur, cut)
    }

    /// Pops a run, or null.
    #[inline]
    pub(crate) fn pop(&mut self) -> *mut Span {
        let span = self.head;
        if !span.is_null() {
            // SAFETY: every span on the stack is a valid header.
            self.head = unsafe { (*span).next };
            self.count -= 1;
        }
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::SPAN_HEADER_SIZE;

    fn blank() -> Box<Span> {
        // SAFETY: all-zero is a valid Span (null pointers, zero counts, discriminant 0).
        Box::new(unsafe { core::mem::zeroed() })
    }

    #[test]
    fn header_fits_and_data_follows_it() {
        assert!(core::mem::size_of::<Span>() <= SPAN_HEADER_SIZE);
        let mut s = blank();
        let p: *mut Span = &mut *s;
        assert_eq!(Span::data(p) as usize - p as usize, SPAN_HEADER_SIZE);
    }

    #[test]
    fn dlist_push_and_remove_in_any_order() {
        let mut spans: Vec<Box<Span>> = (0..4).map(|_| blank()).collect();
        let ptrs: Vec<*mut Span> = spans.iter_mut().map(|s| &mut **s as *mut Span).collect();
        let mut head = ptr::null_mut();
        // SAFETY: all headers live in `spans` for the whole test.
        unsafe {
            for &p in &ptrs {
                SpanDList::push(&mut head, p);
            }
            SpanDList::remove(&mut head, ptrs[1]);
            SpanDList::remove(&mut head, ptrs[3]);
            assert_eq!(head, ptrs[2]);
            assert_eq!((*ptrs[2]).next, ptrs[0]);
            assert_eq!((*ptrs[0]).prev, ptrs[2]);
            SpanDList::remove(&mut head, ptrs[0]);
            SpanDList::remove(&mut head, ptrs[2]);
        }
        assert!(head.is_null());
    }

    #[test]
    fn chains_move_between_stacks() {
        let mut spans: Vec<Box<Span>> = (0..5).map(|_| blank()).collect();
        let ptrs: Vec<*mut Span> = spans.iter_mut().map(|s| &mut **s as *mut Span).collect();
        let mut a = SpanStack::EMPTY;
        for &p in &ptrs {
            // SAFETY: headers outlive the stacks.
            unsafe { a.push(p) };
        }
        let (chain, n) = a.take_chain(3);
        assert_eq!((chain, n), (ptrs[4], 3));
        assert_eq!(a.count, 2);
        assert_eq!(a.head, ptrs[1]);
        let mut b = SpanStack::EMPTY;
        // SAFETY: a detached chain of 3.
        unsafe { b.push_chain(chain, n) };
        assert_eq!(b.count, 3);
        let popped: Vec<_> =
            std::iter::from_fn(|| Some(b.pop()).filter(|p| !p.is_null())).collect();
        assert_eq!(popped, vec![ptrs[4], ptrs[3], ptrs[2]]);
        assert_eq!(a.take_chain(10).1, 2);
        assert_eq!(a.take_chain(1), (ptr::null_mut(), 0));
    }

    #[test]
    fn cut_takes_the_old_bottom_of_a_stack() {
        let mut spans: Vec<Box<Span>> = (0..5).map(|_| blank()).collect();
        let p: Vec<*mut Span> = spans.iter_mut().map(|s| &mut **s as *mut Span).collect();
        let mut st = SpanStack::EMPTY;
        for (stamp, &s) in p.iter().enumerate() {
            // SAFETY: headers outlive the stack.
            unsafe {
                (*s).cached_at = stamp as u64;
                st.push(s);
            }
        }
        assert_eq!(st.cut_stamped_before(0), (p[0], 1));
        assert_eq!(st.count, 4);
        assert_eq!(st.cut_stamped_before(2), (p[2], 2));
        // SAFETY: as above.
        unsafe {
            assert_eq!((*p[2]).next, p[1]);
            assert!((*p[1]).next.is_null(), "the first cut ended the chain");
            assert!((*p[3]).next.is_null(), "the second cut ended the stack");
        }
        assert_eq!((st.count, st.head), (2, p[4]));
        assert_eq!(st.cut_stamped_before(2), (ptr::null_mut(), 0));
        assert_eq!(st.cut_stamped_before(10), (p[4], 2));
        assert!(st.head.is_null() && st.count == 0);
    }

    #[test]
    fn a_split_run_gets_a_clean_header_for_its_rest() {
        const SPAN: usize = 4096;
        // Three "spans" of 4 KiB, the second full of a block's old bytes.
        let mut memory = vec![0xA5u8; 3 * SPAN + SPAN];
        let base = memory
            .as_mut_ptr()
            .map_addr(|a| a.next_multiple_of(SPAN))
            .cast::<Span>();
        // SAFETY: `base` and the rest lie in `memory`, aligned for `Span`.
        unsafe {
            base.cast::<u8>()
                .write_bytes(0, core::mem::size_of::<Span>());
            (*base).span_count = 3;
            (*base).offset_from_master = 5;
            let rest = Span::split(base, 1, SPAN);
            assert_eq!(rest as usize, base as usize + SPAN);
            assert_eq!(((*base).span_count, (*rest).span_count), (1, 2));
            assert_eq!((*rest).offset_from_master, 6);
            assert!((*rest).remote.is_clear(), "no stale remote-free word");
            assert!((*rest).next.is_null() && (*rest).prev.is_null());
            assert_eq!((*rest).used, 0);
        }
    }

    #[test]
    fn stack_is_lifo_with_count() {
        let mut spans: Vec<Box<Span>> = (0..3).map(|_| blank()).collect();
        let mut st = SpanStack::EMPTY;
        for s in spans.iter_mut() {
            // SAFETY: headers outlive the stack.
            unsafe { st.push(&mut **s) };
        }
        assert_eq!(st.count, 3);
        assert_eq!(st.pop(), &mut *spans[2] as *mut Span);
        assert_eq!(st.count, 2);
        st.pop();
        st.pop();
        assert!(st.pop().is_null());
        assert_eq!(st.count, 0);
    }
}
