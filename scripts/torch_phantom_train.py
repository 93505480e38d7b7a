"""The reference generator (docs/design.md §4) trained in PyTorch on a phantom cohort, to compare how
much it learns with cta2mbf's training on the same data and budget.

usage: python scripts/torch_phantom_train.py ROOT/5.mbf_myocardium train|eval SAMPLES_PER_VOLUME EPOCHS
Held out: HELD (comma-separated ids; default 8861616,8877676, the demo's, seed 1). Settings through the environment:
LR (1e-3), B1 (0.9), NGF (8), UP (transposed|trilinear), CLIP (1: window [-200, 400] HU to
[-1, 1]; 0: divide by SSC, default 500), WIN (lo,hi: window [lo, hi] HU to [-1, 1], overrides CLIP), DOFF/DSC (target offset 0 / scale 100), LOSS (l1|l2),
WL1 (weight of a whole-block L1 term, 0), CROP (training crop, 32,32,40), WARM (1: estimate running stats before training).
Probes of what the network can learn in the budget: NDOWN (stride-2 convs, 3 as docs/design.md §4),
ARCH (resnet, or linear: a single 5^3 conv), ORACLE (1: the target inside the myocardium is
replaced by 115 + 3 x (CTA clipped to [-200, 500] - 90), a pointwise function of the input).
Prints, per epoch, the training loss and the held-out myocardium MAE in both norm modes.
"""
import sys, os, math, json, time, numpy as np, nibabel as nib, torch, torch.nn as nn
torch.manual_seed(0); rng=np.random.default_rng(0)
root, mode, steps_per_vol, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lr0=float(os.environ.get('LR','1e-3')); b1=float(os.environ.get('B1','0.9')); ngf=int(os.environ.get('NGF','8'))
up=os.environ.get('UP','transposed'); doff=float(os.environ.get('DOFF','0')); dsc=float(os.environ.get('DSC','100')); lossk=os.environ.get('LOSS','l1'); clip=os.environ.get('CLIP','1')=='1'; crop=tuple(int(t) for t in os.environ.get('CROP','32,32,40').split(','))
held=os.environ.get('HELD','8861616,8877676').split(',')
def load(p):
    g=lambda n: nib.load(f'{root}/{p}/{n}').get_fdata().astype(np.float32)
    c=g('cropped_cta.nii.gz'); b=g('cropped_mbf.nii.gz')
    if os.environ.get('ORACLE')=='1': b=np.where(b>0, 115+3*(np.clip(c,-200,500)-90), b).astype(np.float32)
    return c, b, (g('cropped_mbf_mask.nii.gz')==1).astype(np.float32)
cases={p:load(p) for p in sorted(os.listdir(root))}
tr=[p for p in cases if p not in held]
win=[float(t) for t in os.environ['WIN'].split(',')] if 'WIN' in os.environ else None
def src(v):
    if win: return (np.clip(v,win[0],win[1])-0.5*(win[0]+win[1]))/(0.5*(win[1]-win[0]))
    return (np.clip(v,-200,400)-100)/300 if clip else v/float(os.environ.get('SSC','500'))
def extract(a, start, size, pad):
    out=np.full(size,pad,np.float32); sl_o=[];sl_i=[]
    for k in range(3):
        lo=max(0,start[k]); hi=min(a.shape[k],start[k]+size[k]); sl_i.append(slice(lo,hi)); sl_o.append(slice(lo-start[k],hi-start[k]))
    out[tuple(sl_o)]=a[tuple(sl_i)]; return out
def centred(shape,size): return [ (shape[k]-size[k])//2 for k in range(3)]
def sample(p):
    c,b,m=cases[p]
    for ax in range(3):
        if rng.random()<0.5: c,b,m=np.flip(c,ax),np.flip(b,ax),np.flip(m,ax)
    if rng.random()<0.8:
        st=[ rng.integers(0,n-s+1) if n>=s else -rng.integers(0,s-n+1) for n,s in zip(c.shape,crop)]
    else: st=centred(c.shape,crop)
    return extract(c,st,crop,-1024), extract(b,st,crop,-1024), extract(m,st,crop,0)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_generator import ResnetGenerator, init_weights
if os.environ.get('ARCH','resnet')=='linear': G=nn.Conv3d(1,1,5,padding=2)
else: G=ResnetGenerator(ngf, 6, 'batch', up, int(os.environ.get('NDOWN','3'))); init_weights(G)
opt=torch.optim.Adam(G.parameters(),lr=lr0,betas=(b1,0.999))
def evaluate(m_mode):
    maes=[]
    for p in held:
        c,b,m=cases[p]; size=tuple(int(math.ceil(n/8)*8) for n in c.shape); st=centred(c.shape,size)
        x=torch.from_numpy(src(extract(c,st,size,-1024)))[None,None]
        G.train(m_mode=='train')
        with torch.no_grad(): f=G(x)[0,0].numpy()*dsc+doff
        bb=extract(b,st,size,-1024); mm=extract(m,st,size,0)>0
        maes.append(np.abs(f[mm]-bb[mm]).mean())
    return np.mean(maes), maes
t0=time.time()
if os.environ.get('WARM','0')=='1':
    for mod in G.modules():
        if isinstance(mod,nn.BatchNorm3d): mod.momentum=None; mod.reset_running_stats()
    G.train()
    with torch.no_grad():
        for p in tr:
            c,b,m=sample(p); G(torch.from_numpy(src(c).copy())[None,None])
    for mod in G.modules():
        if isinstance(mod,nn.BatchNorm3d): mod.momentum=0.1
for ep in range(epochs):
    lr=lr0*0.5*(1+math.cos(math.pi*ep/epochs))
    for g_ in opt.param_groups: g_['lr']=lr
    order=[p for p in tr for _ in range(steps_per_vol)]; rng.shuffle(order); tot=0
    G.train(mode=='train')
    for p in order:
        c,b,m=sample(p)
        x=torch.from_numpy(src(c).copy())[None,None]; y=torch.from_numpy((b.copy()-doff)/dsc)[None,None]; mm=torch.from_numpy(m.copy())[None,None]
        f=G(x); e=(f-y); e=torch.abs(e) if lossk=='l1' else e*e
        loss=(e*mm).sum()/(mm.sum()+1e-6)+float(os.environ.get('WL1','0'))*e.mean()
        opt.zero_grad(); loss.backward(); opt.step(); tot+=loss.item()
    state={k:v.clone() for k,v in G.state_dict().items()}
    et=evaluate('train'); G.load_state_dict(state); ee=evaluate('eval'); G.load_state_dict(state)
    print(f'ep {ep+1} lr {lr:.2e} loss {tot/len(order):.4f} val train-mode {et[0]:.2f} eval-mode {ee[0]:.2f} [{time.time()-t0:.0f}s]', flush=True)
